"""Fit the detector-box -> training-crop maps of weights/calibration.json (fkd/calibration.py reads them).

    python -m training.calibrate [--data ../shared/data] [--out weights/calibration.json]

Each map is fitted on the training faces of its data set: the detector's box of each face, matched
to its landmark box, and the medians of their offsets and size ratio. `ibug68_marks` maps the
detector's six face points to the landmark box (least squares, in the frame the Landmarker levels
them in), on the photos and on the same photos letterboxed into webcam frames (`FRAMES`): the points
land differently on a face that fills less of the detector's view. `full_to_short` maps the
full-range detector's boxes to the short-range one's, on the 300-W training faces both find once.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fkd.calibration import CALIBRATION_FILE, BoxCalibration, MarkCalibration, mark_features, read_maps
from fkd.data import DATA_DIR, find_300w, find_imm, split_300w, split_imm
from fkd.detect import BLAZEFACE_FULL, Detection, MediaPipeDetector, make_detector
from fkd.geometry import apply_affine, box_side, landmark_box, letterbox, level_turn
from fkd.io import load_image
from fkd.landmarker import Settings
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


FRAMES = ((640, 480), (1280, 720))  # pixels (width, height): webcam frames the points' map also sees


def detect_matched(records, detector, frames=(None,)) -> dict:
    """For each record, the detection nearest its landmark box in its photo (frame None) and in the photo
    letterboxed into each other frame of `frames` (width, height), each photo read once. Returns, per
    frame, (detections, the labelled points in their pixels, misses)."""
    out = {frame: ([], [], 0) for frame in frames}
    for r in records:
        photo = load_image(r.image, max_side=100_000)
        for frame in frames:
            rgb, points = photo, r.points
            if frame is not None:
                rgb, to_frame = letterbox(photo, frame)
                points = apply_affine(to_frame, points)
            det, kept, misses = out[frame]
            best = nearest(detector.detect(rgb), landmark_box(points))
            if best is None:
                out[frame] = det, kept, misses + 1
            else:
                det.append(best)
                kept.append(points)
    return out


def nearest(found: list[Detection], target: np.ndarray) -> Detection | None:
    """The detection whose box centre lies nearest the landmark box `target`'s, unless it lies a whole
    box side away (the only face found is someone else's)."""
    cl = (target[:2] + target[2:]) / 2
    best = min(found, key=lambda d: np.linalg.norm((d.box[:2] + d.box[2:]) / 2 - cl), default=None)
    if best is None or np.linalg.norm((best.box[:2] + best.box[2:]) / 2 - cl) > box_side(target):
        return None
    return best


def fit_marks(found: list[Detection], points: list[np.ndarray]) -> tuple[MarkCalibration, np.ndarray, np.ndarray]:
    """Least squares from each face's six points (`mark_features`) to its landmark box, both turned
    as `Landmarker.marked_crops` levels them. Returns the map, its boxes and the targets (level)."""
    above = Settings().level_above
    features, targets, levelled = [], [], []
    for d, p in zip(found, points):
        to_level, _ = level_turn(d.marks, (0, 1), above)
        marks, side = apply_affine(to_level, d.marks), box_side(d.box)
        f, centre = mark_features(marks, side)
        t = landmark_box(apply_affine(to_level, p))
        features.append(f)
        targets.append([*(((t[:2] + t[2:]) / 2 - centre) / side), np.log(box_side(t) / side)])
        levelled.append((marks, side, t))
    w = np.linalg.lstsq(np.array(features), np.array(targets), rcond=None)[0].T
    cal = MarkCalibration(tuple(tuple(row) for row in w.tolist()))
    return cal, np.array([cal.apply(m, s) for m, s, _ in levelled]), np.array([t for _, _, t in levelled])


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
        # the points' map also sees webcam frames; IMM's 29 training faces are too few for its 39 numbers
        matched = detect_matched(train, det, (None, *FRAMES) if layout == "ibug68" else (None,))
        found, kept, misses = matched[None]
        d, t = np.array([f.box for f in found]), np.array([landmark_box(p) for p in kept])
        cal = fit(d, t)
        before, after = box_errors(d, t), box_errors(np.array([cal.apply(b) for b in d]), t)
        fitted_on = f"{len(d)} training faces of {sub} ({misses} not detected)"
        result[layout] = {**asdict(cal), "fitted_on": fitted_on, "without": before, "with": after}
        print(layout, json.dumps(result[layout], indent=1))
        if layout == "ibug68":
            found, kept = zip(*[(d, p) for frame in matched for d, p in zip(*matched[frame][:2]) if d.marks is not None])
            marks, boxes, level_targets = fit_marks(found, kept)
            result["ibug68_marks"] = {"weights": [list(row) for row in marks.weights], "with": box_errors(boxes, level_targets),
                                      "fitted_on": f"{len(found)} faces: {fitted_on} as they are and letterboxed into "
                                                   + " and ".join(f"{w}×{h}" for w, h in FRAMES) + " frames"}
            print("ibug68_marks", json.dumps(result["ibug68_marks"]["with"], indent=1))
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
                pairs.append((f[0].box, s[0].box))
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
