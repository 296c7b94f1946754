import numpy as np
import pytest

from fkd.geometry import CropSpec, apply_affine, crop_matrix, invert_affine, warp


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
