"""Map a detector's (or a person's) face box to the box the models were trained on.

The models crop around the landmark bounding box; BlazeFace's box is bigger, higher (forehead)
and square. A three-number map fitted on the training images closes that gap:
    centre = detector centre + (dx, dy) · side,   side = scale · detector side.
The short-range detector also gives six face points (eyes, nose tip, mouth, ears): a linear map from
them places the landmark box closer than the box does (`MarkCalibration`, "<layout>_marks").
`python -m training.calibrate` refits both and writes weights/calibration.json with their residuals.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fkd.geometry import box_side
from fkd.weights import WEIGHTS_DIR, WeightsError

CALIBRATION_FILE = WEIGHTS_DIR / "calibration.json"


@dataclass(frozen=True)
class BoxCalibration:
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0

    def apply(self, box: np.ndarray) -> np.ndarray:
        """Detector box → canonical (landmark-box-like) square box."""
        s = box_side(box)
        cx = (box[0] + box[2]) / 2 + self.dx * s
        cy = (box[1] + box[3]) / 2 + self.dy * s
        h = self.scale * s / 2
        return np.array([cx - h, cy - h, cx + h, cy + h], np.float32)


IDENTITY = BoxCalibration()


def mark_features(marks: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """(features (13,), centre (2,)) of a detector's six face points (level: turned as the crop will be)
    and its box side: a constant, then the points about the centre of the eyes, nose and mouth, in box sides."""
    marks = np.asarray(marks, np.float64)
    centre = marks[:4].mean(0)
    return np.concatenate([[1.0], ((marks - centre) / side).reshape(-1)]), centre


@dataclass(frozen=True)
class MarkCalibration:
    """Detector face points -> the square landmark box: `weights` (3 rows of 13) turn `mark_features`
    into the box centre's offset from the points' centre (x, y, in box sides) and the log of its side
    over the box side; fitted by least squares on the training faces."""
    weights: tuple[tuple[float, ...], ...]

    def apply(self, marks: np.ndarray, side: float) -> np.ndarray:
        """The six points (level) and the detector box's side -> the landmark box, square (4,)."""
        f, centre = mark_features(marks, side)
        dx, dy, log_scale = np.asarray(self.weights) @ f
        c, h = centre + np.array([dx, dy]) * side, np.exp(log_scale) * side / 2
        return np.array([c[0] - h, c[1] - h, c[0] + h, c[1] + h], np.float32)


def _damaged(path: Path, why: object) -> WeightsError:
    return WeightsError(f"{path}: damaged calibration file ({why}); `python -m training.calibrate` refits it, "
                        "or `git checkout` restores it")


def read_maps(path: Path) -> dict:
    """The calibration file's maps by name ({} when there is none); unreadable is a WeightsError."""
    if not Path(path).exists():
        return {}
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # a folder, no permission, not JSON, not UTF-8
        raise _damaged(path, e) from None
    if not isinstance(d, dict):
        raise _damaged(path, "not a JSON object of fitted maps")
    return d


def load_calibration(layout: str, path: Path = CALIBRATION_FILE) -> BoxCalibration:
    """The fitted map for a point layout ('ibug68', 'imm58'); identity if none was fitted. Only this
    layout's entry is checked: a damaged other one must not stop every model from loading."""
    d = read_maps(path).get(layout)
    if not d:
        return IDENTITY
    try:
        return BoxCalibration(**{k: float(d[k]) for k in ("dx", "dy", "scale")})
    except (KeyError, TypeError, ValueError) as e:
        raise _damaged(path, f"{layout}: {e!r}") from None


def load_mark_calibration(layout: str, path: Path = CALIBRATION_FILE) -> MarkCalibration | None:
    """The fitted map from the detector's face points for a layout ("<layout>_marks"); None if none was fitted."""
    d = read_maps(path).get(f"{layout}_marks")
    if not d:
        return None
    try:
        w = tuple(tuple(float(v) for v in row) for row in d["weights"])
        if len(w) != 3 or any(len(row) != 13 for row in w):
            raise ValueError("weights must be 3 rows of 13")
        return MarkCalibration(w)
    except (KeyError, TypeError, ValueError) as e:
        raise _damaged(path, f"{layout}_marks: {e!r}") from None
