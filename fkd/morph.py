"""Face morphing from 68 keypoints: align two faces, triangulate, warp per triangle, cross-dissolve.

    a, pa, b, pb = align_pair(img_a, pts_a, img_b, pts_b, size=512)   # both faces in one frame
    frames = morph_frames(a, pa, b, pb, n_frames=60)                   # list of RGB uint8
    media.write_mp4("morph.mp4", frames, fps=30); media.write_gif("morph.gif", frames, fps=30)   # fkd.media

Alignment: face A goes to a canonical square crop from its eyes and mouth (the FFHQ recipe, so
the eyes are level and the face fills the frame); face B is then fitted onto A's aligned points
by a least-squares similarity transform over all 68 points (Umeyama), so only the shape
difference is left to morph. Border points (corners and edge midpoints) join the keypoints, so
the triangulation covers the whole frame and the background morphs too.

Speed: every frame is one dense backward map per image. The triangles of the in-between shape
are rasterised into a triangle-index map (cv2.fillPoly), each pixel picks its triangle's affine
map to the source (one gather from a small table), and cv2.remap samples both images. No
per-triangle Python loop over pixels. Pure NumPy/OpenCV; no Gradio here.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from fkd.geometry import apply_affine

LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)   # iBUG 68: the eye in the image's left, right half
MOUTH_CORNERS = (48, 54)
SUBPIXEL_BITS = 4                                    # cv2.fillPoly fixed point: 1/16 pixel


# ---------------------------------------------------------------------------------------------
# alignment

def face_quad(pts: np.ndarray) -> np.ndarray:
    """FFHQ-style square (4, 2) around a 68-point face: tl, bl, br, tr; eyes level, face centred."""
    p = np.asarray(pts, dtype=np.float64)
    eye_l, eye_r = p[LEFT_EYE].mean(0), p[RIGHT_EYE].mean(0)
    eye_avg, eye_to_eye = (eye_l + eye_r) / 2, eye_r - eye_l
    mouth = (p[MOUTH_CORNERS[0]] + p[MOUTH_CORNERS[1]]) / 2
    eye_to_mouth = mouth - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])  # blend of eye line and face axis
    x /= max(np.hypot(*x), 1e-6)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return np.array([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """2×3 similarity taking the quad's corners to the corners of a size×size image."""
    dst = np.array([[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]], np.float32)
    return cv2.getAffineTransform(np.asarray(quad[:3], np.float32), dst).astype(np.float64)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift; no reflection) src → dst: 2×3 (Umeyama 1991)."""
    s, d = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = s.mean(0), d.mean(0)
    s0, d0 = s - ms, d - md
    var = (s0 ** 2).sum() / len(s)
    if var < 1e-12:
        raise ValueError("the source points are all in one place")
    U, S, Vt = np.linalg.svd(d0.T @ s0 / len(s))
    D = np.diag([1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    R = U @ D @ Vt
    scale = (S * np.diag(D)).sum() / var
    return np.hstack([scale * R, (md - scale * R @ ms)[:, None]])


def align_pair(img_a: np.ndarray, pts_a: np.ndarray, img_b: np.ndarray, pts_b: np.ndarray, size: int = 512):
    """Both faces in one size×size frame: A by its eyes and mouth, B fitted onto A's points
    (`align_matrices`). Returns (a, pa, b, pb): the aligned RGB images and their points in the new frame.
    """
    Ma, Mb = align_matrices(img_a, pts_a, img_b, pts_b, size)
    pa, pb = apply_affine(Ma, pts_a), apply_affine(Mb, pts_b)
    return warp_reflect(img_a, Ma, (size, size)), pa, warp_reflect(img_b, Mb, (size, size)), pb


def align_matrices(img_a: np.ndarray, pts_a: np.ndarray, img_b: np.ndarray, pts_b: np.ndarray, size: int = 512):
    """(Ma, Mb): 2×3 maps of photo A and photo B into the size×size frame.

    Where the FFHQ frame reaches past either photo (a tightly cropped portrait), it is cropped to the
    largest square both photos fill that still holds both faces with a margin, zoomed in at most
    MAX_ZOOM×, so no frame shows made-up border; what is left over (a face at a photo's edge) gets
    the photo's edge drawn out (`warp_reflect`).
    """
    Ma = quad_matrix(face_quad(pts_a), size)
    Mb = similarity(pts_b, apply_affine(Ma, pts_a))
    cover = _inside(img_a, Ma, size) & _inside(img_b, Mb, size)
    if not cover.all():
        # a pixel in hand: zoomed in, the square's edge pixels fall between those checked here
        cover = cv2.erode(cover.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE) > 0
        both = np.concatenate([apply_affine(Ma, pts_a), apply_affine(Mb, pts_b)])
        lo, hi = both.min(0), both.max(0)
        margin = FACE_MARGIN * (hi - lo).max()
        keep = np.clip(np.r_[lo - margin, hi + margin], 0, size - 1)  # the margin as far as the frame goes
        square = covered_square(cover, keep, size / MAX_ZOOM)
        if square is not None:
            x0, y0, side = square
            k = size / side  # frame pixel x in [x0, x0 + side) → (x - x0 + 0.5) k - 0.5
            S = np.array([[k, 0, (0.5 - x0) * k - 0.5], [0, k, (0.5 - y0) * k - 0.5], [0, 0, 1]])
            Ma, Mb = ((S @ np.vstack([M, [0, 0, 1]]))[:2] for M in (Ma, Mb))
    return Ma, Mb


MAX_ZOOM = 1.6      # the frame cropped to the photos is at least 1/1.6 of the FFHQ square (faces stay whole)
FACE_MARGIN = 0.1   # of the faces' side: room kept around both faces' points when cropping


def _inside(image: np.ndarray, M: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool: the frame pixels that M takes from inside the photo."""
    ones = np.ones(image.shape[:2], np.float32)
    return cv2.warpAffine(ones, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0) >= 0.999


def covered_square(cover: np.ndarray, keep, min_side: float) -> tuple[int, int, int] | None:
    """(x0, y0, side) of the largest square all True in `cover` (h, w) that holds the box `keep`
    (x0, y0, x1, y1) and is at least `min_side`, placed nearest the middle; None if there is none."""
    h, w = cover.shape
    I = cv2.integral(cover.astype(np.uint8)).astype(np.int64)  # (h + 1, w + 1)
    kx0, ky0, kx1, ky1 = keep
    for side in range(min(h, w), int(np.ceil(min_side)) - 1, -2):
        xs = np.arange(max(0, int(np.ceil(kx1)) + 1 - side), min(int(np.floor(kx0)), w - side) + 1)
        ys = np.arange(max(0, int(np.ceil(ky1)) + 1 - side), min(int(np.floor(ky0)), h - side) + 1)
        if not len(xs) or not len(ys):
            continue
        Y, X = np.meshgrid(ys, xs, indexing="ij")
        full = (I[Y + side, X + side] - I[Y, X + side] - I[Y + side, X] + I[Y, X]) == side * side
        if full.any():
            d = np.where(full, np.hypot(X + side / 2 - w / 2, Y + side / 2 - h / 2), np.inf)
            i, j = np.unravel_index(np.argmin(d), d.shape)
            return int(X[i, j]), int(Y[i, j]), side
    return None


def warp_reflect(image: np.ndarray, M: np.ndarray, out_wh: tuple[int, int]) -> np.ndarray:
    """Affine warp; where the frame reaches past the photo, the photo's edge is drawn out and blurred.

    The edge pixels carried outwards (not a mirror of the photo: a mirrored head of dark hair
    became a dark blurred blob above every frame), softened so they read as an out-of-focus
    background rather than streaks. Like fkd.geometry.warp, a big shrink first area-averages the
    source, so no aliasing.
    """
    scale = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))
    if scale < 0.5:
        f = 0.5 / scale
        small = cv2.resize(image, None, fx=1 / f, fy=1 / f, interpolation=cv2.INTER_AREA)
        xs, ys = image.shape[1] / small.shape[1], image.shape[0] / small.shape[0]
        M = M @ np.array([[xs, 0, (xs - 1) / 2], [0, ys, (ys - 1) / 2], [0, 0, 1]])  # small px → original px → out
        image = small
    out = cv2.warpAffine(image, M, out_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones(image.shape[:2], np.float32), M, out_wh, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if inside.min() >= 1.0:
        return out
    side = max(out_wh)
    inside = cv2.GaussianBlur(cv2.erode(inside, np.ones((3, 3), np.uint8)), (0, 0), side / 200)[..., None]
    soft = cv2.GaussianBlur(out, (0, 0), side / 40, borderType=cv2.BORDER_REPLICATE)
    return (out * inside + soft * (1 - inside)).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# triangles

def border_points(w: int, h: int) -> np.ndarray:
    """Corners and edge midpoints (8, 2) of a w×h image, so the triangles tile the whole frame."""
    xs, ys = (0, (w - 1) / 2, w - 1), (0, (h - 1) / 2, h - 1)
    return np.array([(x, y) for y in ys for x in xs if not (x == xs[1] and y == ys[1])], np.float32)


def with_border(pts: np.ndarray, w: int, h: int, margin: float = 2.0) -> np.ndarray:
    """Keypoints pulled `margin` px inside the frame (so none lies on a border line), plus border points."""
    p = np.asarray(pts, np.float32)
    p = np.stack([np.clip(p[:, 0], margin, w - 1 - margin), np.clip(p[:, 1], margin, h - 1 - margin)], 1)
    return np.concatenate([p, border_points(w, h)])


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T, 3) of vertex indices; coincident points are left out, not an error."""
    from scipy.spatial import Delaunay

    return Delaunay(np.asarray(points, np.float64)).simplices.astype(np.int32)


def triangle_affines(src_tris: np.ndarray, dst_tris: np.ndarray) -> np.ndarray:
    """Per triangle, the affine map taking src vertices onto dst vertices: (T, 3, 2) C with [x y 1] @ C.

    src_tris, dst_tris: (T, 3, 2). A degenerate (flat) src triangle gets the least-squares map.
    """
    S = np.concatenate([np.asarray(src_tris, np.float64), np.ones((*src_tris.shape[:2], 1))], -1)  # (T, 3, 3)
    return np.linalg.pinv(S) @ np.asarray(dst_tris, np.float64)


def triangle_index_map(points: np.ndarray, tris: np.ndarray, w: int, h: int) -> np.ndarray:
    """(h, w) map: 1 + index of the triangle covering each pixel centre, 0 where none does.

    uint8 while the triangles fit (68 keypoints + 8 border points give ~145), else int32.
    """
    idx = np.zeros((h, w), np.uint8 if len(tris) < 255 else np.int32)
    poly = np.round(np.asarray(points, np.float64)[tris] * (1 << SUBPIXEL_BITS)).astype(np.int32)  # (T, 3, 2)
    for k, tri in enumerate(poly):  # ~150 tiny C calls: fast
        cv2.fillConvexPoly(idx, tri, k + 1, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    return idx


class _Grid:
    """Pixel coordinates of an h×w frame, built once per morph."""

    def __init__(self, w: int, h: int):
        self.w, self.h = w, h
        self.y, self.x = (a.astype(np.float32) for a in np.mgrid[0:h, 0:w])


def _maps(idx: np.ndarray, C: np.ndarray, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """Dense backward maps: a pixel (x, y) of triangle k samples the source at [x y 1] @ C[k]."""
    table = np.zeros((6, max(256, len(C) + 1)), np.float32)  # row 0: not covered → identity
    table[:, 0] = (1, 0, 0, 1, 0, 0)
    table[:, 1:len(C) + 1] = C.reshape(len(C), 6).T           # c00 c01 c10 c11 c20 c21
    if idx.dtype == np.uint8:
        c = [cv2.LUT(idx, row[:256]) for row in table]          # one C pass per coefficient
    else:
        c = [np.take(row, idx) for row in table]
    mx = cv2.add(cv2.add(cv2.multiply(grid.x, c[0]), cv2.multiply(grid.y, c[2])), c[4])
    my = cv2.add(cv2.add(cv2.multiply(grid.x, c[1]), cv2.multiply(grid.y, c[3])), c[5])
    return mx, my


def _remap(image: np.ndarray, idx: np.ndarray, C: np.ndarray, grid: _Grid) -> np.ndarray:
    mx, my = _maps(idx, C, grid)
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def warp_triangles(image: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray, tris: np.ndarray,
                   out_wh: tuple[int, int] | None = None) -> np.ndarray:
    """Piecewise-affine warp: triangle k of `src_pts` in `image` lands on triangle k of `dst_pts`."""
    w, h = out_wh or (image.shape[1], image.shape[0])
    dst = np.asarray(dst_pts, np.float64)
    C = triangle_affines(dst[tris], np.asarray(src_pts, np.float64)[tris])  # backward: output → source
    return _remap(image, triangle_index_map(dst, tris, w, h), C, _Grid(w, h))


def morph_frames(a: np.ndarray, pa: np.ndarray, b: np.ndarray, pb: np.ndarray, n_frames: int = 60,
                 tris: np.ndarray | None = None, workers: int = 2) -> list[np.ndarray]:
    """`n_frames` RGB frames from A (first) to B (last): shapes move linearly, colours cross-dissolve.

    a, b: aligned uint8 images of the same size; pa, pb: their keypoints (N, 2) in that frame.
    `tris` (T, 3) indexes the points *with* border points appended (see `with_border`); by
    default it is the Delaunay triangulation of the mean shape. Frames are independent and OpenCV
    releases the GIL, so `workers` threads make them side by side.
    """
    if a.shape != b.shape:
        raise ValueError(f"both images must have the same size, got {a.shape} and {b.shape}")
    if n_frames < 2:
        raise ValueError("a morph needs at least 2 frames")
    h, w = a.shape[:2]
    pa, pb = with_border(pa, w, h).astype(np.float64), with_border(pb, w, h).astype(np.float64)
    if tris is None:
        tris = triangulate((pa + pb) / 2)
    grid = _Grid(w, h)

    def frame(t: float) -> np.ndarray:
        p = (1 - t) * pa + t * pb                       # the in-between shape
        idx = triangle_index_map(p, tris, w, h)         # shared by both warps
        wa = a if t == 0 else _remap(a, idx, triangle_affines(p[tris], pa[tris]), grid)
        wb = b if t == 1 else _remap(b, idx, triangle_affines(p[tris], pb[tris]), grid)
        return cv2.addWeighted(wa, 1 - t, wb, t, 0.0)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(frame, np.linspace(0.0, 1.0, n_frames)))


def there_and_back(frames: list[np.ndarray]) -> list[np.ndarray]:
    """A → B → A, without showing either end twice in a row (loops smoothly)."""
    return list(frames) + list(frames[-2:0:-1])


# ---------------------------------------------------------------------------------------------
# pictures and files

def draw_triangulation(image: np.ndarray, keypoints: np.ndarray, tris: np.ndarray | None = None) -> np.ndarray:
    """RGB image with the morph's triangles (white edges, border points included) and the keypoints (green)."""
    h, w = image.shape[:2]
    full = with_border(keypoints, w, h)
    tris = triangulate(full) if tris is None else tris
    out = np.ascontiguousarray(image.copy())
    thick = max(1, round(max(h, w) / 512))
    poly = np.round(full[tris] * (1 << SUBPIXEL_BITS)).astype(np.int32)
    cv2.polylines(out, list(poly), True, (255, 255, 255), thick, cv2.LINE_AA, shift=SUBPIXEL_BITS)
    for x, y in full[: len(keypoints)]:
        cv2.circle(out, (int(round(x)), int(round(y))), thick + 1, (0, 255, 0), -1, cv2.LINE_AA)
    return out
