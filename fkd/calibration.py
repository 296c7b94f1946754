"""Map a detector's (or a person's) face box to the box the models were trained on.

The models crop around the landmark bounding box; BlazeFace's box is bigger, higher (forehead)
and square. A three-number map fitted on the training images closes that gap:
    centre = detector centre + (dx, dy) · side,   side = scale · detector side.
`python -m fkd.calibration` refits it and writes weights/calibration.json with its residuals.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fkd.geometry import box_side, landmark_box
from fkd.weights import WEIGHTS_DIR, WeightsError, save_json

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
    return WeightsError(f"{path}: damaged calibration file ({why}); `python -m fkd.calibration` refits it, "
                        "or `git checkout` restores it")


def _read(path: Path) -> dict:
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
    d = _read(path).get(layout)
    if not d:
        return IDENTITY
    try:
        return BoxCalibration(**{k: float(d[k]) for k in ("dx", "dy", "scale")})
    except (KeyError, TypeError, ValueError) as e:
        raise _damaged(path, f"{layout}: {e!r}") from None


def box_errors(canon: np.ndarray, target: np.ndarray) -> dict:
    """Centre and size error of square boxes vs the landmark boxes, in landmark-box sides."""
    s = np.array([box_side(b) for b in target])
    c_err = np.linalg.norm(((canon[:, :2] + canon[:, 2:]) - (target[:, :2] + target[:, 2:])) / 2, axis=1) / s
    sizes = np.array([box_side(b) for b in canon])
    return {"centre_err_mean": float(c_err.mean()), "size_ratio_log_std": float(np.std(np.log(sizes / s))),
            "size_ratio_mean": float(np.mean(sizes / s))}


def fit(det_boxes: np.ndarray, lm_boxes: np.ndarray) -> BoxCalibration:
    """Medians are robust to the odd detection that locks onto a neighbour's face."""
    sd = np.array([box_side(b) for b in det_boxes])
    sl = np.array([box_side(b) for b in lm_boxes])
    cd = (det_boxes[:, :2] + det_boxes[:, 2:]) / 2
    cl = (lm_boxes[:, :2] + lm_boxes[:, 2:]) / 2
    d = (cl - cd) / sd[:, None]
    return BoxCalibration(float(np.median(d[:, 0])), float(np.median(d[:, 1])), float(np.median(sl / sd)))


def detect_matched(records, detector) -> tuple[np.ndarray, np.ndarray, int]:
    """For each record, the detection that overlaps its landmark box most. Returns boxes, targets, misses."""
    from fkd.io import load_image

    det, lm, misses = [], [], 0
    for r in records:
        rgb = load_image(r.image, max_side=100_000)
        target = landmark_box(r.points)
        found = detector.detect(rgb)
        if not found:
            misses += 1
            continue
        cl = (target[:2] + target[2:]) / 2
        best = min(found, key=lambda t: np.linalg.norm((t[0][:2] + t[0][2:]) / 2 - cl))[0]
        if np.linalg.norm((best[:2] + best[2:]) / 2 - cl) > box_side(target):
            misses += 1  # the only face found is someone else's
            continue
        det.append(best)
        lm.append(target)
    return np.array(det), np.array(lm), misses


def main(argv=None) -> None:
    from fkd.data import DATA_DIR, find_300w, find_imm, split_300w, split_imm
    from fkd.detect import make_detector

    p = argparse.ArgumentParser(prog="python -m fkd.calibration", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Fit the detector-box → training-crop calibration on training images. "
                                            "Maps whose data is not found are kept as they are in --out.")
    p.add_argument("--data", default=str(DATA_DIR),
                   help="folder holding 300w/ and/or imm_face_db/")
    p.add_argument("--out", default=str(CALIBRATION_FILE), help="the calibration file to update")
    a = p.parse_args(argv)
    data = Path(a.data)
    if not any((data / sub).is_dir() for sub in ("300w", "imm_face_db")):
        p.error(f"{data}: holds neither 300w/ nor imm_face_db/ (nothing to fit; {a.out} is left as it is)")
    try:
        result = _read(Path(a.out))  # what is not refitted here stays
    except WeightsError as e:
        p.error(str(e))
    det = make_detector("mediapipe-short")
    for layout, sub in (("ibug68", "300w"), ("imm58", "imm_face_db")):
        if not (data / sub).is_dir():
            print(f"{data / sub}: not found, {layout} keeps its map" if layout in result else f"{data / sub}: not found, skipping {layout}")
            continue
        recs, _ = find_300w(data / sub) if layout == "ibug68" else find_imm(data / sub)
        train, _ = split_300w(recs, data / sub) if layout == "ibug68" else split_imm(recs)
        d, t, misses = detect_matched(train, det)
        cal = fit(d, t)
        before, after = box_errors(d, t), box_errors(np.array([cal.apply(b) for b in d]), t)
        result[layout] = {**asdict(cal), "fitted_on": f"{len(d)} training faces of {sub} ({misses} not detected)",
                          "without": before, "with": after}
        print(layout, json.dumps(result[layout], indent=1))
    # full-range boxes → short-range convention, on the 300-W training faces both models find
    if (data / "300w").is_dir():
        from fkd.detect import BLAZEFACE_FULL, MediaPipeDetector
        full = MediaPipeDetector(BLAZEFACE_FULL)
        recs, _ = find_300w(data / "300w")
        train, _ = split_300w(recs, data / "300w")
        pairs = []
        for r in train[::4]:
            from fkd.io import load_image
            rgb = load_image(r.image, max_side=100_000)
            s, f = det.detect(rgb), full.detect(rgb)
            if len(s) == 1 and len(f) == 1:
                pairs.append((f[0][0], s[0][0]))
        full.close()
        fb, sb = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        cal = fit(fb, sb)
        result["full_to_short"] = {**asdict(cal), "fitted_on": f"{len(pairs)} 300-W training faces found once by both",
                                   "without": box_errors(fb, sb), "with": box_errors(np.array([cal.apply(b) for b in fb]), sb)}
        print("full_to_short", json.dumps(result["full_to_short"], indent=1))
    det.close()
    save_json(Path(a.out), result)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
