"""Boxes, crops and the affine maps between image pixels and model-input pixels.

Conventions: points are 0-based pixel coordinates with pixel centres on integers. A face box is
(x0, y0, x1, y1). The *canonical* box of a face is the bounding box of its landmarks; every model
crops relative to it with a `CropSpec`, and a detector box is first mapped to it by the
calibration (fkd/calibration.py).
"""
from __future__ import annotations

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


def invert_affine(M: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(M.astype(np.float64))


def warp(image: np.ndarray, M: np.ndarray, out_wh: tuple[int, int]) -> np.ndarray:
    """Crop/resize by `M`. Area-averaging when shrinking a lot avoids aliasing on big photos."""
    scale = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))
    if scale < 0.5:
        # shrink the source first so bilinear sampling doesn't skip pixels (big photo, small face)
        f = 0.5 / scale
        small = cv2.resize(image, None, fx=1 / f, fy=1 / f, interpolation=cv2.INTER_AREA)
        ys, xs = image.shape[0] / small.shape[0], image.shape[1] / small.shape[1]
        # map small-image pixels back to the original ones, then apply M
        S = np.array([[xs, 0, (xs - 1) / 2], [0, ys, (ys - 1) / 2], [0, 0, 1]])
        M = M @ S
        image = small
    return cv2.warpAffine(image, M, out_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def to_gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
