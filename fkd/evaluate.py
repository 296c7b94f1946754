"""Score a model on any folder of labelled faces, in the field's metrics and the course's.

    python -m fkd.evaluate DIR [--model ibug68_kd] [--box detector|landmarks] [--flip-test auto|on|off]
                           [--ced ced.png] [--export-csv preds.csv] [--pts OUT_DIR] [--json metrics.json]

DIR holds images with 300-W `.pts` (or a dlib XML, or IMM `.asf`). NME is normalised by the outer
eye corners (inter-ocular, 300-W's convention) for 68 points; for IMM by the landmark box
diagonal. `--box detector` runs the whole pipeline as `Landmarker.predict` does (MediaPipe +
calibration, the levelled pass for tilted heads, the search of turned copies) and scores the face
found nearest the labelled one; faces it misses are counted as "not found" and left out of the NME.
The confidence check that drops false detections in use is left out here: the labels say where
the face is, and a hard face the model doubts is scored, not dropped. `--box landmarks` crops on the
true landmark box (no levelled pass). `--flip-test` (auto by default, as in `Landmarker`) applies to
both.
The Kaggle-style score is the mean absolute error per coordinate in original-image pixels.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fkd.landmarker import DEFAULT_MODEL
from fkd.predict import add_flip_argument


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="folder of images with .pts / .asf / dlib XML")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--box", choices=("detector", "landmarks"), default="detector")
    add_flip_argument(p)
    p.add_argument("--ced", help="write the CED plot PNG here (default: none)")
    p.add_argument("--export-csv", help="Kaggle-style CSV: image,x0,y0,...,xN,yN (original pixels, 0-based)")
    p.add_argument("--pts", help="write predictions as 1-based .pts files into this folder")
    p.add_argument("--json", help="write the metrics as JSON here")
    p.add_argument("--limit", type=int, default=0, help="only the first N faces")
    return p


def nearest_face(faces, gt: np.ndarray):
    """The face whose points' centre is nearest the labelled points' centre, if within half a face
    of it (AFW photos hold neighbours close by); else None: the labelled face was not found."""
    from fkd.geometry import box_side, landmark_box

    c = gt.mean(0)
    dist = [np.linalg.norm(f.keypoints.mean(0) - c) for f in faces]
    if not dist or min(dist) >= box_side(landmark_box(gt)) / 2:
        return None
    return faces[int(np.argmin(dist))]


def evaluate_records(lm, records, box: str = "detector"):
    """Predictions for records: (pred list, gt list, kept records, not-found records)."""
    from fkd.geometry import landmark_box
    from fkd.io import load_image_sized

    preds, gts, kept, missed = [], [], [], []
    for r in records:
        if box == "landmarks":
            rgb, (W, _) = load_image_sized(r.image)
            s = W / rgb.shape[1]
            p = lm.predict_boxes(rgb, [landmark_box(r.points) / s], "landmarks")[0][0] * s
        else:  # the whole pipeline, as Landmarker.predict runs it (points in original pixels)
            face = nearest_face(lm.predict(r.image, min_confidence=0.0), r.points)
            if face is None:
                missed.append(r)
                continue
            p = face.keypoints
        preds.append(p)
        gts.append(r.points)
        kept.append(r)
    return preds, gts, kept, missed


def load_folder(d: Path, n_points: int):
    from fkd.data import find_300w, find_imm

    if any(d.glob("*.asf")):
        return find_imm(d)
    return find_300w(d, n_points)


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    from fkd.predict import open_landmarker
    from fkd.metrics import nme, summary

    d = Path(args.dir)
    if not d.is_dir():
        print(f"error: {d}: no such folder", file=sys.stderr)
        return 2
    lm = open_landmarker(args.model, args.flip_test)
    if lm is None:
        return 2
    n = lm.layout.n_points
    if n == 1:
        print("error: the nose model has one point; evaluate it with train.py's validation", file=sys.stderr)
        return 2
    records, problems = load_folder(d, n)
    if problems:
        print(f"skipped {len(problems)} file(s): e.g. {problems[0]}", file=sys.stderr)
    if args.limit:
        records = records[: args.limit]
    if not records:
        print(f"error: no labelled faces with {n} points under {d}", file=sys.stderr)
        return 1
    preds, gts, kept, missed = evaluate_records(lm, records, args.box)
    lm.close()
    if not preds:
        print(f"error: no face found in any of the {len(records)} images", file=sys.stderr)
        return 1
    P, G = np.stack(preds), np.stack(gts)
    eyes = lm.layout.eyes
    m = {"model": lm.name, "box": args.box, "flip_test": args.flip_test, **summary(P, G, eyes),
         "not_found": len(missed), "skipped_files": len(problems)}
    print(json.dumps(m, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(m, indent=1) + "\n")
    if args.ced:
        from fkd.viz import ced_plot, save_png
        save_png(args.ced, ced_plot({f"{lm.name} ({args.box} box)": nme(P, G, eyes)}))
    if args.export_csv:
        header = "image," + ",".join(f"x{i},y{i}" for i in range(n))
        rows = [f"{r.image.name}," + ",".join(f"{v:.2f}" for v in p.reshape(-1)) for r, p in zip(kept, preds)]
        Path(args.export_csv).write_text("\n".join([header] + rows) + "\n")
    if args.pts:
        from fkd.data import write_pts
        out = Path(args.pts)
        out.mkdir(parents=True, exist_ok=True)
        for r, p in zip(kept, preds):
            write_pts(out / (r.image.stem + ".pts"), p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
