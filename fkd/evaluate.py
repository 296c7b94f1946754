"""Score a model on any folder of labelled faces, in the field's metrics and the course's.

    python -m fkd.evaluate DIR [--model NAME] [--box detector|landmarks] [--flip-test auto|on|off]
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
The metrics (printed, and written by `--json`) name their unit: `nme_mean_percent`,
`nme_median_percent`, `fr8_percent` (faces with NME over 8 %), `auc8_percent` (area under the CED
to 8 %, of its maximum), `mae_px`; floats to 4 decimals. A label that cannot be read, or with a
coordinate that is not a finite number (nan, inf), is skipped and named, and counted in `skipped_files`.
A face labelled twice (a .pts and a dlib XML, or two XMLs, as in 300-W's "large" layout) is scored
once. `--pts` mirrors the folder's subfolders and names a file `<image stem>.pts`, or
`<image stem>_face<k>.pts` (k = 1, 2, ...) for each face of an image holding several;
`--export-csv` rows name the image by its path under the folder and give the same k in their
`face` column.
The model must predict the data's points (68 for 300-W, 58 for IMM) and every output must be
writable: both are checked before the run, not after it.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from fkd.flags import bounded
from fkd.io import writable
from fkd.predict import add_flip_argument, output_problem
from fkd.zoo import DEFAULT_MODEL, MODELS

MODEL_FOR_POINTS = {68: DEFAULT_MODEL, 58: "imm58"}  # the model to name for data with this many points
SAME_FACE_PX = 2.0     # mean point distance under which two labels are one face (a 1-based .pts vs a
                       # rounded 0-based XML differ by up to ~1.5 px; distinct faces by far more)
NO_PTS = ": no .pts beside it"  # fkd.data.find_300w's problem for an image without a .pts
CED_EXTS = (".png", ".jpg", ".jpeg")
SHOWN_PROBLEMS = 10    # skipped files named one per line; past this, a count


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fkd.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="folder of images with .pts / .asf / dlib XML")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(MODELS)} (default {DEFAULT_MODEL}), or a weights path")
    p.add_argument("--box", choices=("detector", "landmarks"), default="detector",
                   help="detector (default): the whole pipeline, MediaPipe and the calibration, as in use; "
                        "landmarks: crop on each labelled face's landmark box")
    add_flip_argument(p)
    p.add_argument("--ced", help="write the CED plot PNG here (default: none)")
    p.add_argument("--export-csv", help="Kaggle-style CSV: image,face,x0,y0,...,xN,yN (original pixels, 0-based; "
                                        "face: 1, 2, ... within the image)")
    p.add_argument("--pts", help="write predictions as 1-based .pts files into this folder "
                                 "(<stem>.pts, or <stem>_face<k>.pts when an image holds several faces; subfolders as in DIR)")
    p.add_argument("--json", help="write the metrics as JSON here")
    p.add_argument("--limit", type=bounded(int, 1), help="only the first N faces")
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
        else:  # the whole pipeline, as Landmarker.predict runs it (points in original pixels), but
            # every detection kept, and no looking for small faces (tiles, which keep only faces of
            # 0.9, and the full-range model beside a close face): one labelled face per photo, the
            # close one, found by the detector on the whole picture (300-W crops, under 512 px, get no
            # tiles anyway)
            face = nearest_face(lm.predict(r.image, min_confidence=0.0, small_faces=False), r.points)
            if face is None:
                missed.append(r)
                continue
            p = face.keypoints
        preds.append(p)
        gts.append(r.points)
        kept.append(r)
    return preds, gts, kept, missed


def load_folder(d: Path, n_points: int) -> tuple[list, list[str]]:
    """(records, problems) of a folder, each face once and numbered within its image."""
    from fkd.data import find_300w, find_imm

    if any(d.glob("*.asf")):
        records, problems = find_imm(d)
    else:
        labels, problems = find_300w(d, n_points)
        records = unique_faces(labels)
        if len(records) < len(labels):
            print(f"left out {len(labels) - len(records)} face(s) labelled twice", file=sys.stderr)
        # an image with no .pts that an XML labels was scored, not skipped
        covered = {r.image.resolve() for r in records}
        problems = [p for p in problems if not (p.endswith(NO_PTS) and Path(p[: -len(NO_PTS)]).resolve() in covered)]
    number_faces(records)
    return records, problems


def unique_faces(records: list) -> list:
    """The records without repeats: the same image with the same points (within SAME_FACE_PX), kept
    first as found (the .pts, with its sub-pixel points, comes before the XML's copy)."""
    kept, seen = [], {}
    for r in records:
        others = seen.setdefault(r.image.resolve(), [])
        if any(o.shape == r.points.shape and np.linalg.norm(o - r.points, axis=1).mean() < SAME_FACE_PX
               for o in others):
            continue
        others.append(r.points)
        kept.append(r)
    return kept


def number_faces(records: list) -> None:
    """Set meta["nth_face"] = k (1, 2, ...) within the image and meta["image_faces"]: names each face's
    outputs, so the faces of one image don't overwrite each other's .pts (the XML's own meta["face"]
    counts its boxes, with or without points, from 0)."""
    total = Counter(r.image.resolve() for r in records)
    seen: Counter = Counter()
    for r in records:
        key = r.image.resolve()
        seen[key] += 1
        r.meta["nth_face"], r.meta["image_faces"] = seen[key], total[key]


def image_name(r, root: Path) -> Path:
    """The image's path under the evaluated folder: 300-W's "large" layout has an image_0001.jpg in
    both lfpw/trainset and lfpw/testset, which a bare file name would merge (a flat folder: the name)."""
    for image, folder in ((r.image.absolute(), root.absolute()), (r.image.resolve(), root.resolve())):
        try:  # the path as written first: a folder of symlinks keeps its own layout
            return image.relative_to(folder)
        except ValueError:
            pass
    return Path(r.image.name)  # an XML can list an image outside the folder


def pts_name(r, root: Path) -> Path:
    """`<stem>.pts` for an image's only face (300-W's own naming), else `<stem>_face<k>.pts`, in the
    image's subfolder under the evaluated folder."""
    rel = image_name(r, root)
    return rel.with_name(rel.stem + (f"_face{r.meta['nth_face']}" if r.meta["image_faces"] > 1 else "") + ".pts")


def wrong_model(d: Path, records: list, lm) -> str | None:
    """Why the model cannot score this folder's faces (another point count), naming the model that can;
    None if it can. Checked before any inference, so the mismatch doesn't surface after the whole run."""
    n = lm.layout.n_points
    if records:
        k = len(records[0].points)  # IMM faces have 58 points whatever the model
    else:  # a 300-W folder read for the model's count found nothing: does another model fit?
        from fkd.data import find_300w
        k = next((m for m in MODEL_FOR_POINTS if m != n and find_300w(d, m)[0]), n)
    if k == n:
        return None
    fit = f": use --model {MODEL_FOR_POINTS[k]}" if k in MODEL_FOR_POINTS else ""
    return f"{d} holds {k}-point faces and {lm.name} predicts {n} points{fit}"


def output_files(args) -> list[tuple[str, str]]:
    """(flag, path) of the output files asked for (--pts, a folder, is checked on its own)."""
    return [(flag, path) for flag, path in (("--json", args.json), ("--export-csv", args.export_csv), ("--ced", args.ced))
            if path]


def output_error(args) -> str | None:
    """Why an output cannot be written, found before the run so a typo doesn't cost the run; else None."""
    files = output_files(args)
    if len({Path(path).resolve() for _, path in files}) < len(files):
        return f"{' and '.join(flag for flag, _ in files)} name the same file: one would overwrite the other"
    for flag, path in files:
        if flag == "--ced" and Path(path).suffix.lower() not in CED_EXTS:
            return f"--ced {path}: name the picture .png or .jpg"
        problem = output_problem(Path(path), [])
        if problem:
            return f"{flag} {problem}"
    if args.pts and (Path(args.pts).is_file() or not writable(Path(args.pts))):
        return f"--pts {args.pts}: cannot make or write this folder"
    return None


def overwrites_data(args, records: list) -> str | None:
    """Why an output would overwrite the labels or images being scored (--pts DIR mirrors DIR's own
    layout, so it would replace every label by a prediction); else None. Checked before inference."""
    data = {p.resolve() for r in records for p in (r.image, r.image.with_suffix(".pts"))}
    for flag, path in output_files(args):
        if Path(path).resolve() in data:
            return f"{flag} {path}: would overwrite the data being scored"
    if args.pts and any((Path(args.pts) / pts_name(r, Path(args.dir))).resolve() in data for r in records):
        return f"--pts {args.pts}: would overwrite the labels being scored; give another folder"
    return None


def skipped_message(problems: list[str], shown: int = SHOWN_PROBLEMS) -> str:
    """The files left out and why, the first `shown` of them one per line."""
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"skipped {len(problems)} file(s):\n  " + "\n  ".join(problems[:shown]) + more


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    from fkd.predict import open_checked
    from fkd.metrics import nme, summary, with_units

    d = Path(args.dir)
    if not d.is_dir():
        what = "is a file: give the folder that holds the images and their labels" if d.exists() else "no such folder"
        print(f"error: {d}: {what}", file=sys.stderr)
        return 2
    lm = open_checked(output_error(args), args.model, args.flip_test)
    if lm is None:
        return 2
    n = lm.layout.n_points
    if n == 1:
        print("error: the nose model has one point; evaluate it with train.py's validation", file=sys.stderr)
        return 2
    records, problems = load_folder(d, n)
    problem = wrong_model(d, records, lm)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if problems:
        print(skipped_message(problems), file=sys.stderr)
    if args.limit:
        records = records[: args.limit]
        number_faces(records)  # a face whose image-mates were cut off is the image's only one now
    problem = overwrites_data(args, records)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
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
    try:
        m = {"model": lm.name, "box": args.box, "flip_test": args.flip_test, **with_units(summary(P, G, eyes)),
             "not_found": len(missed), "skipped_files": len(problems)}
    except ValueError as e:  # the labels are checked as they are read: the model's own points are not finite
        print(f"error: {lm.name} gave points that are not finite numbers: {e}", file=sys.stderr)
        return 1
    print(json.dumps(m, indent=1, allow_nan=False))
    try:  # checked before the run, but a disk can still fill up: say so in one line
        write_outputs(args, m, kept, preds, nme(P, G, eyes), f"{lm.name} ({args.box} box)")
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def write_outputs(args, metrics: dict, kept: list, preds: list, errors: np.ndarray, label: str) -> None:
    """The files asked for: metrics JSON, CED picture, Kaggle-style CSV, one .pts per face (images
    named by their path under the evaluated folder)."""
    root = Path(args.dir)
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=1, allow_nan=False) + "\n")
    if args.ced:
        from fkd.viz import ced_plot, save_png
        save_png(args.ced, ced_plot({label: errors}))
    if args.export_csv:  # the app's and fkd.predict's CSV layout (fkd.results)
        from fkd.results import write_csv
        write_csv(args.export_csv, [(image_name(r, root).as_posix(), r.meta["nth_face"], p) for r, p in zip(kept, preds)])
    if args.pts:
        from fkd.results import write_pts
        for r, p in zip(kept, preds):
            f = Path(args.pts) / pts_name(r, root)
            f.parent.mkdir(parents=True, exist_ok=True)
            write_pts(f, p)


if __name__ == "__main__":
    sys.exit(main())
