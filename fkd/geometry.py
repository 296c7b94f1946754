"""Boxes, crops and the affine maps between image pixels and model-input pixels.

Conventions: points are 0-based pixel coordinates with pixel centres on integers. A face box is
(x0, y0, x1, y1). The *canonical* box of a face is the bounding box of its landmarks; every model
crops relative to it with a `CropSpec`, and a detector box is first mapped to it by the
calibration (fkd/calibration.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropSpec:
    """Input rectangle relative to the canonical box: centre offset and size, in box sides."""
    dx: float = 0.0
    dy: float = 0.0
    w: float = 1.3
    h: float = 1.3

    def to_dict(self) -> dict:
        return asdict(self)


def landmark_box(points: np.ndarray) -> np.ndarray:
    """Tight bounding box of the points: the canonical face box."""
    p = np.asarray(points, dtype=np.float32)
    return np.array([*p.min(0), *p.max(0)], dtype=np.float32)


def box_side(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


def face_side(face) -> float:
    """How big a face (anything with `.keypoints`, `.box`) is: its points' landmark box, or its box
    for a one-point layout."""
    if len(face.keypoints) > 1:
        return box_side(landmark_box(np.asarray(face.keypoints)))
    return box_side(np.asarray(face.box, np.float64))


def crop_matrix(box: np.ndarray, spec: CropSpec, out_wh: tuple[int, int], pad: tuple[int, int] = (0, 0)) -> np.ndarray:
    """2×3 affine from image pixels to input pixels for the crop of `box` by `spec`.

    `pad` adds that many pixels of context on each side (training patches keep context for
    rotations and shifts; the centre `out_wh` of the padded patch is the model input).
    """
    side = max(box_side(box), 1.0)
    cx = (box[0] + box[2]) / 2 + spec.dx * side
    cy = (box[1] + box[3]) / 2 + spec.dy * side
    sx, sy = out_wh[0] / (spec.w * side), out_wh[1] / (spec.h * side)
    # pixel (cx, cy) → centre of the output, with pixel centres on integers on both sides
    return np.array([[sx, 0, (out_wh[0] - 1) / 2 + pad[0] - sx * cx],
                     [0, sy, (out_wh[1] - 1) / 2 + pad[1] - sy * cy]], dtype=np.float64)


def apply_affine(M: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    return (p @ M[:, :2].T + M[:, 2]).astype(np.float32)


def mirror_points(points, width: int, perm):
    """Points found on a mirrored image, (..., N, 2) numpy or torch, back in the image: x → width - 1 - x
    (pixel centres on integers) and each point takes its mirror's index, so 36 stays the left eye."""
    out = points[..., list(perm), :]          # advanced indexing copies, in numpy and in torch
    out[..., 0] = width - 1 - out[..., 0]
    return out


def invert_affine(M: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(M.astype(np.float64))


def compose(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The 2×3 affine that applies B, then A."""
    return np.hstack([A[:, :2] @ B[:, :2], A[:, :2] @ B[:, 2:] + A[:, 2:]])


def turn(center, degrees: float) -> np.ndarray:
    """2×3 affine that turns the image by `degrees` counter-clockwise (as seen) about `center`."""
    return cv2.getRotationMatrix2D((float(center[0]), float(center[1])), float(degrees), 1.0)


def eye_roll(points: np.ndarray, eyes: tuple[int, int]) -> float:
    """How far the head is tilted in the image plane, in degrees: the angle of the line from the
    first outer eye corner (on the image's left in an upright face) to the second. Turning the
    image by this angle (`turn`) levels the eyes."""
    d = np.asarray(points[eyes[1]], np.float64) - np.asarray(points[eyes[0]], np.float64)
    return math.degrees(math.atan2(d[1], d[0]))


def level_turn(points: np.ndarray, eyes: tuple[int, int], above: float) -> tuple[np.ndarray, float]:
    """The turn (2×3) about the points' centre that levels their eye line when it lies tilted past `above`
    degrees, and its angle; else no turn (identity, 0)."""
    roll = eye_roll(points, eyes)
    if abs(roll) <= above:
        return np.eye(2, 3), 0.0
    return turn(np.asarray(points, np.float64).mean(0), roll), roll


def upright_crop_matrix(points: np.ndarray, eyes: tuple[int, int], spec: CropSpec, out_wh: tuple[int, int]) -> np.ndarray:
    """The crop of a face whose points are roughly known, turned so that its eyes are level: the
    landmark box taken in the levelled frame, so the model sees the upright faces it trained on."""
    b = landmark_box(points)
    level = turn((b[:2] + b[2:]) / 2, eye_roll(points, eyes))
    return compose(crop_matrix(landmark_box(apply_affine(level, points)), spec, out_wh), level)


def turned_image(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The whole image turned by `degrees` about its centre on a canvas that holds all of it,
    and the 2×3 affine from image pixels to canvas pixels."""
    h, w = image.shape[:2]
    c, s = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    W, H = int(math.ceil(w * c + h * s)), int(math.ceil(w * s + h * c))
    A = turn(((w - 1) / 2, (h - 1) / 2), degrees)
    A[:, 2] += [(W - w) / 2, (H - h) / 2]
    return cv2.warpAffine(image, A, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT), A


def letterbox(image: np.ndarray, size: tuple[int, int], fill: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """The image scaled to fit a frame of `size` (width, height) without stretching, centred on grey
    `fill` (a webcam frame), and the 2×3 affine from image pixels to frame pixels."""
    W, H = size
    k = min(W / image.shape[1], H / image.shape[0])
    w, h = round(image.shape[1] * k), round(image.shape[0] * k)
    small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    out = np.full((H, W, *image.shape[2:]), fill, np.uint8)
    x, y = (W - w) // 2, (H - h) // 2
    out[y:y + h, x:x + w] = small
    kx, ky = w / image.shape[1], h / image.shape[0]  # pixel centres on integers on both sides
    return out, np.array([[kx, 0, (kx - 1) / 2 + x], [0, ky, (ky - 1) / 2 + y]])


def warp(image: np.ndarray, M: np.ndarray, out_wh: tuple[int, int]) -> np.ndarray:
    """Crop/resize by `M`, bilinear, edges replicated. Only the part of the image the crop reads is
    touched; a big shrink first area-averages it, which avoids aliasing on big photos."""
    scale = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))
    # shrink by f = 2, 4, 8 ... (OpenCV's fast whole-factor area mean; 3 is ~8x slower than 2) until
    # the bilinear sampling works at a scale in [0.5, 1) and skips no pixel (big photo, small face)
    # (less 1e-9: a scale of exactly 1/4 that float error puts a hair under still shrinks by 2, as live.js does)
    f = 1 << max(0, math.ceil(math.log2(0.5 / scale) - 1e-9)) if scale < 0.5 else 1
    x0, y0, x1, y1 = _source_rect(M, out_wh, image.shape[1], image.shape[0], margin=2 * f + 2)
    x0, y0 = x0 - x0 % f, y0 - y0 % f
    w, h = (x1 - x0) // f, (y1 - y0) // f
    if w < 1 or h < 1:  # the crop lies outside the image: its edges replicated
        return cv2.warpAffine(image, M, out_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    src = image[y0:y0 + h * f, x0:x0 + w * f]
    M = M @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]])
    while f > 1:  # each halving: pixel (u, v) is the mean of the pixels 2u, 2u + 1 (and v's) before it
        src = cv2.resize(src, (src.shape[1] // 2, src.shape[0] // 2), interpolation=cv2.INTER_AREA)
        M = M @ np.array([[2, 0, 0.5], [0, 2, 0.5], [0, 0, 1]])
        f //= 2
    if src.dtype == np.uint8 and src.ndim == 3 and src.shape[2] == 3:  # 4 channels warp ~1.7× faster, to the same values
        out = cv2.warpAffine(cv2.cvtColor(src, cv2.COLOR_RGB2RGBA), M, out_wh, flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        return cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)
    return cv2.warpAffine(src, M, out_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _source_rect(M: np.ndarray, out_wh: tuple[int, int], W: int, H: int, margin: float) -> tuple[int, int, int, int]:
    """Integer rectangle (x0, y0, x1, y1) of the image that the output of `M` reads, plus `margin`."""
    w, h = out_wh
    corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]])
    src = apply_affine(invert_affine(M), corners)
    lo, hi = np.floor(src.min(0) - margin), np.ceil(src.max(0) + margin) + 1
    return int(max(0, lo[0])), int(max(0, lo[1])), int(min(W, hi[0])), int(min(H, hi[1]))


def to_gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
