import cv2
import numpy as np
import pytest

from fkd import media, morph


def random_shape(seed, n=68, size=512):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.25 * size, 0.75 * size, (n, 2)).astype(np.float32)


def textured(seed, size=256):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def test_first_and_last_frames_are_the_inputs():
    a, b = textured(0), textured(1)
    pa, pb = random_shape(0, 20, 256), random_shape(1, 20, 256)
    frames = morph.morph_frames(a, pa, b, pb, n_frames=7)
    assert len(frames) == 7 and all(f.shape == a.shape and f.dtype == np.uint8 for f in frames)
    assert np.array_equal(frames[0], a) and np.array_equal(frames[-1], b)
    mid = frames[3].astype(float)
    assert np.abs(mid - a).mean() > 5 and np.abs(mid - b).mean() > 5


def test_frames_made_side_by_side_are_the_same_frames_in_order():
    a, b = textured(3), textured(4)
    pa, pb = random_shape(3, 20, 256), random_shape(4, 20, 256)
    one = morph.morph_frames(a, pa, b, pb, n_frames=9, workers=1)
    two = morph.morph_frames(a, pa, b, pb, n_frames=9, workers=2)
    assert len(two) == 9 and all(np.array_equal(x, y) for x, y in zip(one, two))
    dist = [np.abs(f.astype(int) - a).mean() for f in two]
    assert dist == sorted(dist)  # in order: each frame further from A than the one before


def test_in_between_frames_of_one_face_are_that_face():
    """Same image and shape at both ends: the dense warp of every in-between frame is the identity."""
    a, pa = textured(2), random_shape(2, 30, 256)
    for f in morph.morph_frames(a, pa, a, pa, n_frames=5)[1:-1]:
        assert np.abs(f.astype(int) - a).max() <= 1


def test_triangle_affines_map_vertices_exactly():
    rng = np.random.default_rng(3)
    src, dst = rng.uniform(0, 100, (10, 3, 2)), rng.uniform(0, 100, (10, 3, 2))
    C = morph.triangle_affines(src, dst)
    mapped = np.concatenate([src, np.ones((10, 3, 1))], -1) @ C
    np.testing.assert_allclose(mapped, dst, atol=1e-6)


def test_triangle_warp_moves_source_points_onto_destination_points():
    size = 200
    src = np.array([[60, 60], [140, 60], [100, 140]], np.float32)
    dst = src + np.array([[10, 5], [-8, 12], [4, -6]], np.float32)
    img = np.zeros((size, size, 3), np.uint8)
    for k, (x, y) in enumerate(src):  # three coloured dots on the source points
        img[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2, k] = 255
    pts_s, pts_d = morph.with_border(src, size, size), morph.with_border(dst, size, size)
    tris = morph.triangulate((pts_s + pts_d) / 2)
    out = morph.warp_triangles(img, pts_s, pts_d, tris)
    for k, (x, y) in enumerate(dst):
        ys, xs = np.nonzero(out[:, :, k] > 100)
        assert abs(xs.mean() - x) < 1.0 and abs(ys.mean() - y) < 1.0


def test_dense_warp_samples_where_the_triangles_say():
    """Warp an image of its own coordinates: each output pixel must hold the source point it maps from."""
    size = 256
    grid = np.stack(np.meshgrid(np.arange(6), np.arange(6)), -1).reshape(-1, 2) * 30.0 + 50  # 36 points, 30 px apart
    rng = np.random.default_rng(5)
    src = morph.with_border(grid + rng.uniform(-5, 5, grid.shape), size, size)
    dst = src.copy()
    dst[:36] += rng.uniform(-5, 5, (36, 2)).astype(np.float32)  # small moves: no triangle folds over
    tris = morph.triangulate((src + dst) / 2)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    coords = np.dstack([xs, ys, np.zeros_like(xs)])
    out = morph.warp_triangles(coords, src, dst, tris)
    # at every destination keypoint the warped coordinates are the matching source point
    at_dst = np.array([cv2.getRectSubPix(out, (1, 1), (float(x), float(y)))[0, 0, :2] for x, y in dst[:36]])
    np.testing.assert_allclose(at_dst, src[:36], atol=0.6)
    # and inside each triangle the map is the affine one
    idx = morph.triangle_index_map(dst, tris, size, size)
    assert (idx > 0).all(), "the border points must make the triangles cover the whole frame"
    C = morph.triangle_affines(dst[tris], src[tris])
    y, x = 100, 130
    expected = np.array([x, y, 1.0]) @ C[idx[y, x] - 1]
    np.testing.assert_allclose(out[y, x, :2], expected, atol=1e-2)


def test_similarity_recovers_a_known_transform_without_reflection():
    pts = random_shape(6, 68, 400).astype(np.float64)
    ang, s, t = np.deg2rad(17), 1.7, np.array([30.0, -12.0])
    R = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    M = morph.similarity(pts, pts @ R.T + t)
    np.testing.assert_allclose(M, np.hstack([R, t[:, None]]), atol=1e-6)
    mirrored = pts * [-1, 1]
    M2 = morph.similarity(pts, mirrored)
    assert np.linalg.det(M2[:, :2]) > 0  # best rotation, never a flip
    with pytest.raises(ValueError, match="the source points are all in one place"):
        morph.similarity(np.zeros((5, 2)), pts[:5])


def test_alignment_puts_both_faces_in_one_frame():
    from conftest import val_faces
    import fkd
    r1, r2 = val_faces()[:2]
    a, pa, b, pb = morph.align_pair(fkd.load_image(r1.image), r1.points, fkd.load_image(r2.image), r2.points, 512)
    assert a.shape == b.shape == (512, 512, 3)
    iod = np.linalg.norm(pa[36] - pa[45])
    assert 0.2 * 512 < iod < 0.6 * 512                      # the face fills the frame
    assert abs(pa[36:42, 1].mean() - pa[42:48, 1].mean()) < 0.05 * iod  # eyes (nearly) level: FFHQ also uses the face axis
    assert np.abs(pa[[36, 45, 48, 54]] - pb[[36, 45, 48, 54]]).mean() < 0.1 * iod  # eyes and mouth line up


def test_alignment_undoes_size_position_and_rotation(face_image):
    """Photo 2 = photo 1 shrunk, rotated and moved: after alignment both are the same picture."""
    rgb, pts = face_image
    h, w = rgb.shape[:2]
    M = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 0.6)
    M[:, 2] += (40, -25)
    moved = cv2.warpAffine(rgb, M, (w + 80, h), borderMode=cv2.BORDER_REFLECT101)
    a, pa, b, pb = morph.align_pair(rgb, pts, moved, pts @ M[:, :2].T + M[:, 2], 256)
    np.testing.assert_allclose(pa, pb, atol=0.05)
    c = slice(64, 192)  # the face; the borders differ (mirrored padding of different photos)
    assert np.abs(a[c, c].astype(float) - b[c, c]).mean() < 12


def test_there_and_back_and_video_files(tmp_path):
    frames = [np.full((64, 64, 3), v, np.uint8) for v in (0, 100, 200)]
    loop = morph.there_and_back(frames)
    assert [f[0, 0, 0] for f in loop] == [0, 100, 200, 100]
    import imageio.v3 as iio
    mp4 = media.write_mp4(tmp_path / "m.mp4", frames, 10)
    back = np.stack(list(iio.imiter(mp4)))
    assert back.shape == (3, 64, 64, 3) and abs(int(back[2].mean()) - 200) < 8
    assert iio.immeta(mp4).get("codec") == "h264"
    odd = media.write_mp4(tmp_path / "odd.mp4", [np.zeros((51, 67, 3), np.uint8)] * 2, 10)
    assert iio.imread(odd).shape[1:3] == (50, 66)  # even sizes for yuv420p, never a resize to 16s
    gif = media.write_gif(tmp_path / "m.gif", frames, 10)
    assert len(list(iio.imiter(gif))) == 3
    with pytest.raises(ValueError, match=r"both images must have the same size, got \(64, 64, 3\) and \(32, 32, 3\)"):
        morph.morph_frames(frames[0], np.zeros((5, 2)), np.zeros((32, 32, 3), np.uint8), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="a morph needs at least 2 frames"):
        morph.morph_frames(frames[0], np.zeros((5, 2)), frames[1], np.zeros((5, 2)), n_frames=1)


def test_triangulation_drawing():
    a, pa = textured(7, 128), random_shape(7, 12, 128)
    out = morph.draw_triangulation(a, pa)
    assert out.shape == a.shape and not np.array_equal(out, a) and np.array_equal(morph.draw_triangulation(a, pa), out)


def test_frame_past_the_photo_is_filled_from_its_edge_not_a_mirror():
    """A dark head near the top edge was mirrored above it and blurred: a dark blob on every frame."""
    img = np.full((300, 300, 3), 200, np.uint8)
    cv2.circle(img, (150, 45), 30, (20, 20, 20), -1)          # dark hair 15 px below the top edge
    M = np.array([[1.0, 0, 0], [0, 1.0, 100]])                   # the frame starts 100 px above the photo
    out = morph.warp_reflect(img, M, (300, 300))
    assert out[:80].min() > 150, out[:80].min()                  # above the photo: the light edge drawn out
    assert np.array_equal(out[160:], img[60:200])                # inside, far from the edge: the photo itself


def test_covered_square_keeps_the_face_inside_the_photo():
    cover = np.ones((100, 100), bool)
    cover[:20] = False                                           # the photo ends 20 px below the frame's top
    x0, y0, side = morph.covered_square(cover, (30, 40, 70, 90), 50)
    assert cover[y0:y0 + side, x0:x0 + side].all() and side == 80
    assert x0 <= 30 and y0 <= 40 and x0 + side > 70 and y0 + side > 90
    assert morph.covered_square(cover, (30, 5, 70, 90), 50) is None      # the face itself runs past the photo


def test_tightly_cropped_faces_are_aligned_inside_both_photos(face_image):
    """A portrait cut just above the head: the frame is cropped so that every pixel comes from the photos."""
    rgb, pts = face_image
    top = max(0, int(pts[:, 1].min() - 0.25 * np.ptp(pts[:, 1])))  # cut just above the brows
    tight, tight_pts = rgb[top:], pts - [0, top]
    Ma, Mb = morph.align_matrices(tight, tight_pts, rgb, pts, 256)
    assert not morph._inside(tight, morph.quad_matrix(morph.face_quad(tight_pts), 256), 256).all()  # FFHQ's frame runs past
    assert morph._inside(tight, Ma, 256).all() and morph._inside(rgb, Mb, 256).all()
    a, pa, b, pb = morph.align_pair(tight, tight_pts, rgb, pts, 256)
    assert (pa >= 0).all() and (pa < 256).all() and np.abs(pa - pb).max() < 0.5   # the whole face, both aligned


def test_gif_has_the_videos_frames_in_order_at_its_speed(tmp_path):
    """48 frames there and back at 24 fps: the mp4 had 94 frames, the GIF 46 at 12.5 fps."""
    import imageio.v3 as iio
    from PIL import Image
    def frame(k):  # a white bar at x = k: each frame tells where it is
        f = np.zeros((64, 64, 3), np.uint8)
        f[:, k] = 255
        return f
    frames = morph.there_and_back([frame(k) for k in range(48)])
    gif = media.write_gif(tmp_path / "m.gif", frames, 24)
    got = [int(np.argmax(f[32, :, 0])) for f in iio.imiter(gif)]
    assert len(got) == len(frames) == 94
    assert got == list(range(48)) + list(range(46, 0, -1))                             # same frames, same order
    with Image.open(gif) as im:
        delays = []
        for i in range(im.n_frames):
            im.seek(i)
            delays.append(im.info["duration"])
    assert abs(sum(delays) - 1000 * 94 / 24) <= 10 and set(delays) <= {40, 50}          # as long as the video
    # past what a GIF plays (50 fps) or holds (max_frames), every step-th frame, still as long
    step, d = media.gif_plan(94, 60)
    assert step == 2 and len(d) == 47 and abs(sum(d) - 1000 * 94 / 60) <= 10 and min(d) >= 20
    step, d = media.gif_plan(500, 24, max_frames=240)
    assert step == 3 and len(d) == 167
