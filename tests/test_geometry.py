import cv2
import numpy as np
import pytest

from fkd.geometry import (CropSpec, apply_affine, compose, crop_matrix, eye_roll, invert_affine, landmark_box, turn,
                          turned_image, upright_crop_matrix, warp)


def blob(h: int, w: int, p: np.ndarray, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    g = 255 * np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * sigma ** 2))
    return np.repeat(g.astype(np.uint8)[..., None], 3, 2)


def centroid(img: np.ndarray) -> np.ndarray:
    o = img[..., 0].astype(float)
    o = np.where(o > 0.3 * o.max(), o, 0)
    ys, xs = np.mgrid[0:o.shape[0], 0:o.shape[1]]
    return np.array([(o * xs).sum(), (o * ys).sum()]) / o.sum()


# side of the face box in a 1200×900 photo → crop scales from ~1.2 down to ~0.05 (big photo, small
# output: the source is shrunk first), and boxes that reach past the image border
@pytest.mark.parametrize("side,where", [(80, 0.5), (300, 0.5), (700, 0.5), (850, 0.5), (300, 0.08), (300, 0.95)])
def test_warp_puts_each_image_point_where_the_crop_matrix_says(side, where):
    H, W = 900, 1200
    p = np.array([where * W, 0.4 * H])
    img = blob(H, W, p, sigma=side / 25)
    box = np.array([p[0] - side / 2, p[1] - side / 3, p[0] + side / 2, p[1] + side / 2], np.float32)
    M = crop_matrix(box, CropSpec(), (64, 64))
    out = warp(img, M, (64, 64))
    assert out.shape == (64, 64, 3)
    assert np.linalg.norm(centroid(out) - apply_affine(M, p[None])[0]) < 0.3


def test_crop_matrix_round_trip():
    M = crop_matrix(np.array([10, 20, 110, 140], np.float32), CropSpec(0.1, -0.05, 1.3, 1.2), (96, 128), pad=(8, 4))
    pts = np.array([[10.0, 20.0], [57.5, 80.25], [110.0, 140.0]])
    assert np.allclose(apply_affine(invert_affine(M), apply_affine(M, pts)), pts, atol=1e-3)


def face_like_points(rng) -> np.ndarray:
    """68 points with level outer eye corners (36 left, 45 right in the image), jittered elsewhere."""
    pts = rng.uniform([100, 100], [200, 220], size=(68, 2))
    pts[36], pts[45] = [110, 140], [190, 140]
    return pts


@pytest.mark.parametrize("degrees", [-170, -60, -12, 0, 25, 90, 135])
def test_a_turned_face_gets_the_crop_of_the_upright_one(degrees):
    """Turning a face (about any centre) and levelling it again gives the upright face's crop: the
    points land on the same input pixels, so the model sees what it saw on level faces."""
    pts = face_like_points(np.random.default_rng(0))
    tilted = apply_affine(turn((37.0, 410.0), degrees), pts)
    assert eye_roll(tilted, (36, 45)) == pytest.approx(-degrees, abs=1e-3)
    upright = crop_matrix(landmark_box(pts), CropSpec(), (160, 160))
    M = upright_crop_matrix(tilted, (36, 45), CropSpec(), (160, 160))
    assert np.allclose(apply_affine(M, tilted), apply_affine(upright, pts), atol=1e-3)


@pytest.mark.parametrize("degrees", [30, -90, 180])
def test_turned_image_holds_the_whole_image_where_its_matrix_says(degrees):
    H, W = 90, 160
    p = np.array([150.0, 10.0])  # near a corner: it must stay on the canvas
    img = blob(H, W, p, sigma=3)
    turned, A = turned_image(img, degrees)
    corners = apply_affine(A, np.array([[0, 0], [W - 1, 0], [0, H - 1], [W - 1, H - 1]], float))
    assert corners.min() >= -0.5 and (corners.max(0) <= np.array(turned.shape[1::-1]) - 0.5).all()
    assert np.linalg.norm(centroid(turned) - apply_affine(A, p[None])[0]) < 0.3


def test_compose_applies_the_right_matrix_last():
    A, B = turn((5.0, 7.0), 30), np.array([[2.0, 0, 1], [0, 3.0, -4]])
    p = np.array([[1.0, 2.0], [-3.0, 0.5]])
    assert np.allclose(apply_affine(compose(A, B), p), apply_affine(A, apply_affine(B, p)))


@pytest.mark.parametrize("scale", [0.3, 0.2, 0.1])
def test_a_big_shrink_is_a_box_mean_then_the_bilinear_crop(scale):
    """A crop that shrinks more than 2× reads the image averaged over f×f blocks (f = 2, 4, 8: the
    power of two that brings the sampling scale into [0.5, 1)), then samples it bilinearly."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (700, 900, 3), dtype=np.uint8)
    f = {0.3: 2, 0.2: 4, 0.1: 8}[scale]
    M = np.array([[scale, 0.02, -100 * scale], [-0.02, scale, -80 * scale]])
    h, w = 700 // f, 900 // f
    blocks = img[:h * f, :w * f].reshape(h, f, w, f, 3).astype(np.float64).mean((1, 3))
    # block (u, v) is centred on image pixel f·u + (f - 1) / 2
    Mb = M @ np.array([[f, 0, (f - 1) / 2], [0, f, (f - 1) / 2], [0, 0, 1]])
    want = cv2.warpAffine(blocks.astype(np.float32), Mb, (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    got = warp(img, M, (64, 64))
    assert np.abs(got.astype(np.float64) - want).max() <= 2  # uint8 rounding at each halving and in the warp
    assert np.abs(got.astype(np.float64) - want).mean() < 0.6


def test_warp_takes_grey_and_float_images_as_it_takes_rgb_bytes():
    rng = np.random.default_rng(2)
    img = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), (0, 0), 2)
    for scale in (0.9, 0.3, 0.12):
        M = np.array([[scale, 0.03, -50 * scale], [-0.03, scale, -40 * scale]])
        ref = warp(img, M, (64, 64)).astype(np.float64)
        assert np.abs(warp(img.astype(np.float64), M, (64, 64)) - ref).max() <= 2  # rounding at each halving
        assert np.abs(warp(img[..., 0].copy(), M, (64, 64)) - ref[..., 0]).max() <= 1
