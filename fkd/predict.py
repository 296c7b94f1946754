"""Keypoints for photos from the command line.

    python -m fkd.predict photo.jpg [more.jpg folder/ ...] [--model NAME]
                          [--box x0,y0,x1,y1] [--flip-test auto|on|off] [--json out.json] [--csv out.csv] [--draw out_dir]
    python -m fkd.predict folder/ --jsonl out.jsonl [--workers N] [--quiet]     # many photos, resumable
    python -m fkd.predict folder/ --jsonl out.jsonl --ray [ADDRESS]            # on a Ray cluster (pip install .[ray])
    python -m fkd.predict folder/ --ray [ADDRESS] --parquet out_dir/

A folder stands for the images in it and its subfolders (links to folders too; hidden files and
folders left out), in sorted order. Prints (or writes) JSON: [{"image": path, "width": W, "height": H,
"model": name, "faces": [{"box": [...], "score": s, "confidence": c, "turn": t, "keypoints": [[x, y],
...]}]}] in 0-based pixels of the original image (the app's JSON, fkd.results). `--csv` also writes one
row per face, image,face,x0,y0,...,xN,yN, as the app's download and `python -m fkd.evaluate
--export-csv` do. An image that cannot be read gets an "error" entry; the others are still
processed; the exit code is 1 if any failed.

`--jsonl OUT` writes one entry per line instead, appended and flushed as each image is done; a rerun
with the same OUT skips the images already in it (errors included) and redoes a line torn by a kill.
`--workers N` spreads the images over N processes (default: all cores), each with its own model;
lines come in the order images finish. `--ray` runs the same job as a Ray Data pipeline, on a local
Ray instance or the cluster at ADDRESS ("auto", "ray://host:10001"); put --ray after the images.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fkd.bulk import PHOTO_EXTS, VIDEO_EXTS, upright_size  # noqa: F401 - VIDEO_EXTS, upright_size: public here too
from fkd.io import files_under, writable
from fkd.zoo import DEFAULT_MODEL, MODELS


def parse_box(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box wants x0,y0,x1,y1 numbers, got {text!r}") from None
    if len(vals) != 4:
        raise argparse.ArgumentTypeError(f"--box wants four numbers x0,y0,x1,y1, got {len(vals)}")
    return vals


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fkd.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", help="image files, or folders of them")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(MODELS)} (default {DEFAULT_MODEL}), or a weights path")
    p.add_argument("--box", type=parse_box, action="append", help="face box x0,y0,x1,y1 (repeatable); skips the detector")
    p.add_argument("--box-kind", choices=("face", "landmarks"), default="face",
                   help="face: a loose box around the face (like a detector's); landmarks: the tight landmark box")
    add_flip_argument(p)
    p.add_argument("--no-small-faces", dest="small_faces", action="store_false",
                   help="skip the tiles in which the detector looks for faces small in a large picture "
                        "(group photos), ~8 ms each (15 tiles, ~0.12 s, for a 4:3 portrait), and the "
                        "full-range detector beside a close face (~6 ms): as video frames do")
    p.add_argument("--json", help="write the results here instead of printing them")
    p.add_argument("--csv", help="also write every face's points here: image,face,x0,y0,...,xN,yN (one row per face)")
    p.add_argument("--draw", help="also save each image with its points drawn into this folder")
    p.add_argument("--jsonl", help="write one JSON line per image here as each is done; a rerun skips the images in it")
    p.add_argument("--workers", type=int, default=None,
                   help="processes, each with its own model (default: all cores); with --ray, actors (default: the cluster's CPUs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no 'no face found' notes (errors still)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run as a Ray Data pipeline: a local Ray instance, or the cluster at ADDRESS (pip install .[ray])")
    p.add_argument("--parquet", help="with --ray: write Parquet files into this folder (a rerun skips the images in them)")
    return p


FLIP_CHOICES = {"auto": "auto", "on": True, "off": False}  # --flip-test word → Landmarker(flip_test=...)


def add_flip_argument(p: argparse.ArgumentParser) -> None:
    """--flip-test [auto|on|off], shared by the predict and evaluate CLIs; a bare --flip-test is "on"."""
    p.add_argument("--flip-test", nargs="?", choices=tuple(FLIP_CHOICES), default="auto", const="on",
                   help="average with a pass on the mirrored crop: auto (default) for the faces the model "
                        "is less sure of (about half), on for every face (two passes), off for one pass")


def open_checked(problem: str | None, model: str, flip_test: str = "auto"):
    """The Landmarker for a CLI whose arguments check out, or None after printing why not: the
    `problem` found in its arguments (checked first: a typo must not wait for the model), or
    weights that cannot be loaded."""
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return None
    return open_landmarker(model, flip_test)


def open_landmarker(model: str, flip_test: str = "auto"):
    """The Landmarker for a CLI, or None after printing why it could not be loaded."""
    from fkd.landmarker import Landmarker, WeightsError
    try:
        return Landmarker(model, flip_test=FLIP_CHOICES[flip_test])
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def main(argv=None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.box_kind != "face" and not args.box:
        parser.error("--box-kind describes the boxes given with --box; without --box the detector finds the faces")
    if args.parquet and args.ray is None:
        parser.error("--parquet is written by the Ray pipeline: add --ray")
    if sum(map(bool, (args.json, args.jsonl, args.parquet))) > 1:
        parser.error("--json writes everything at the end, --jsonl or --parquet as it goes: pick one of them")
    if args.ray and Path(args.ray).exists():
        parser.error(f"--ray took {args.ray!r} for a cluster address: put --ray after the images, or write --ray=ADDRESS")
    if not args.images:
        parser.error("the following arguments are required: images")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers wants 1 or more")
    from fkd import bulk
    from fkd.results import dumps, write_csv

    images = expand(args.images)
    outputs = [f for f in (args.json, args.csv, args.jsonl) if f]
    problem = next((output_problem(Path(f), images) for f in outputs if output_problem(Path(f), images)), None) or (
        len({Path(f).resolve() for f in outputs}) < len(outputs) and "--json, --jsonl and --csv must name different files") or (
        args.draw and not writable(Path(args.draw)) and f"{args.draw}: cannot write there") or (
        args.parquet and Path(args.parquet).is_file() and f"--parquet {args.parquet}: is a file; give a folder")
    done = {}  # image -> entry of an earlier run
    try:
        done = bulk.read_jsonl(args.jsonl) if args.jsonl and not problem else {}
        if args.parquet:
            done = dict.fromkeys(bulk.parquet_done(args.parquet))
    except ValueError as e:
        problem = str(e)
    tasks = [(p, d) for p, d in drawings(images, args.draw).items() if p not in done]
    workers = args.workers or bulk.default_workers()
    job = bulk.Job(args.model, FLIP_CHOICES[args.flip_test], args.box and tuple(map(tuple, args.box)), args.box_kind,
                   args.small_faces, threads=None if workers == 1 or args.ray is not None else bulk.cores_per_worker(workers))
    lm = None
    if problem or (workers == 1 and tasks and args.ray is None):  # built here, the first task does not wait for it
        lm = open_checked(problem, args.model, args.flip_test)
        if lm is None:
            return 2
    elif tasks and (problem := weights_problem(args.model)):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.draw and tasks:
        Path(args.draw).mkdir(parents=True, exist_ok=True)

    new = {}  # image -> entry, this run's
    bar = progress(len(tasks), len(images) - len(tasks), quiet=args.quiet)
    out = open(args.jsonl, "a") if args.jsonl else None

    def take(entry: dict, notes: list[str] = ()) -> None:
        new[entry["image"]] = entry
        if out:
            bulk.append_jsonl(out, entry)
        for note in notes if notes else (["error: " + entry["error"]] if "error" in entry else []):
            if note.startswith("error") or not args.quiet:
                bar.write(note, file=sys.stderr)
        bar.update(1)
        bar.set_postfix_str(f"{sum('error' in e for e in new.values())} failed", refresh=False)

    try:
        if args.ray is not None:
            bulk.run_ray(job, tasks, args.ray or None, on_entry=take, parquet=args.parquet,
                         actors=args.workers, progress=bool(args.parquet) and not args.quiet)
        else:
            for entry, notes in bulk.run_local(job, tasks, workers, lm):
                take(entry, notes)
    except KeyboardInterrupt:
        print(f"\nstopped: {len(new)} image(s) done{f', in {args.jsonl}; rerun to go on' if out else ''}", file=sys.stderr)
        return 130
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        bar.close()
        if out:
            out.close()

    if args.parquet:
        done.update(dict.fromkeys(bulk.parquet_done(args.parquet)))
        failed = None
    else:
        results = [new.get(p) or done[p] for p in images]  # input order, whichever order they finished in
        failed = sum("error" in e for e in results)
        if args.csv:
            write_csv(args.csv, [(e["image"], k, keypoints_array(f)) for e in results for k, f in enumerate(e.get("faces", ()), 1)])
    if args.jsonl or args.parquet:
        print(f"wrote {args.jsonl or args.parquet} ({len(tasks)} image(s) done now, {len(images) - len(tasks)} before"
              + (f"; {failed} failed in all)" if failed is not None else ")"), file=sys.stderr)
    elif args.json:
        Path(args.json).write_text(dumps(results) + "\n")
        print(f"wrote {args.json} ({len(results)} image(s), {failed} failed)", file=sys.stderr)
    else:
        print(dumps(results))
    return 1 if failed else 0


def drawings(images: list[str], folder: str | None) -> dict[str, str | None]:
    """Each image's drawing path (None without --draw), named up front so that workers finishing in any
    order give the same names: a drawing must not overwrite another, nor an input that is in the
    drawings' folder."""
    if not folder:
        return dict.fromkeys(images)
    used = {Path(p).name for p in images if Path(p).parent.resolve() == Path(folder).resolve()}
    return {p: None if Path(p).is_dir() else str(Path(folder) / unique_name(Path(p).stem + "_keypoints", ".png", used))
            for p in images}


def keypoints_array(face: dict):
    """A face entry's points as floats for the CSV (a null from a broken pass back to NaN)."""
    import numpy as np
    return np.array([[np.nan if v is None else v for v in xy] for xy in face["keypoints"]], np.float64)


def weights_problem(model: str) -> str | None:
    """Why `model` cannot be loaded, found from its files without building it (workers build it), or None."""
    from fkd.weights import WeightsError, read_card, resolve
    try:
        read_card(model)
    except WeightsError as e:
        return str(e)
    return None if resolve(model).exists() else f"{resolve(model)}: weights file not found"


def progress(total: int, before: int, quiet: bool):
    """The stderr progress bar: images/s, ETA and failures so far (tqdm); silent with --quiet or one image."""
    from tqdm import tqdm
    return tqdm(total=total, unit="img", file=sys.stderr, disable=quiet or total < 2, dynamic_ncols=True,
                mininterval=0.5, desc=f"{before} done before" if before else None, smoothing=0.1)


def expand(paths: list[str]) -> list[str]:
    """Each folder replaced by its images (subfolders too, sorted; hidden files left out); files and bad
    paths stay as given, so they get their own error entry, and an empty folder is kept: it is reported,
    not skipped silently. A file reached twice (a folder and a file in it) is done once."""
    out, seen = [], set()
    for p in paths:
        for f in (Path(p).is_dir() and _images_in(Path(p))) or [p]:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def _images_in(folder: Path) -> list[str]:
    """The photos under `folder` (hidden files and folders left out), sorted by path as a string."""
    return sorted(str(f) for f in files_under(folder, PHOTO_EXTS) if f.is_file())


def unique_name(stem: str, suffix: str, used: set[str]) -> str:
    """stem + suffix, or stem_2 + suffix, ... if an earlier image of the run took it (same file name
    in two folders): one drawing must not overwrite another."""
    name, k = stem + suffix, 1
    while name in used:
        k += 1
        name = f"{stem}_{k}{suffix}"
    used.add(name)
    return name


def output_problem(target: Path, inputs: list) -> str | None:
    """Why an output file cannot be written, or None: checked before the work starts, so that a typo
    does not cost a long run and an output never overwrites an input."""
    if target.is_dir():
        return f"{target}: is a folder; give a file name"
    if any(Path(i).exists() and target.resolve() == Path(i).resolve() for i in inputs):
        return f"{target}: would overwrite an input"
    return None if writable(target.parent) else f"{target}: cannot write there"


if __name__ == "__main__":
    sys.exit(main())
