"""Fit the detector-box -> training-crop maps of weights/calibration.json (fkd/calibration.py reads them).

    python -m training.calibrate [--data ../shared/data] [--out weights/calibration.json]

Each map is fitted on the training faces of its data set: the detector's box of each face, matched
to its landmark box, and the medians of their offsets and size ratio. `full_to_short` maps the
full-range detector's boxes to the short-range one's, on the 300-W training faces both find once.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fkd.calibration import CALIBRATION_FILE, BoxCalibration, read_maps
from fkd.data import DATA_DIR, find_300w, find_imm, split_300w, split_imm
from fkd.detect import BLAZEFACE_FULL, MediaPipeDetector, make_detector
from fkd.geometry import box_side, landmark_box
from fkd.io import load_image
from fkd.weights import WeightsError, save_json


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
    p = argparse.ArgumentParser(prog="python -m training.calibrate", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
        result = read_maps(Path(a.out))  # what is not refitted here stays
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
        full = MediaPipeDetector(BLAZEFACE_FULL)
        recs, _ = find_300w(data / "300w")
        train, _ = split_300w(recs, data / "300w")
        pairs = []
        for r in train[::4]:
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
