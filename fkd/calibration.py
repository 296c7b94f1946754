"""Map a detector's (or a person's) face box to the box the models were trained on.

The models crop around the landmark bounding box; BlazeFace's box is bigger, higher (forehead)
and square. A three-number map fitted on the training images closes that gap:
    centre = detector centre + (dx, dy) · side,   side = scale · detector side.
`python -m training.calibrate` refits it and writes weights/calibration.json with its residuals.
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
