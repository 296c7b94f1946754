"""Keypoints for photos from the command line.

    python -m fkd.predict photo.jpg [more.jpg folder/ ...] [--model NAME]
                          [--box x0,y0,x1,y1] [--flip-test auto|on|off] [--json out.json] [--csv out.csv] [--draw out_dir]

A folder stands for the images in it and its subfolders (links to folders too; hidden files and
folders left out), in sorted order. Prints (or writes) JSON: [{"image": path, "width": W, "height": H,
"model": name, "faces": [{"box": [...], "score": s, "confidence": c, "turn": t, "keypoints": [[x, y],
...]}]}] in 0-based pixels of the original image (the app's JSON, fkd.results). `--csv` also writes one
row per face, image,face,x0,y0,...,xN,yN, as the app's download and `python -m fkd.evaluate
--export-csv` do. An image that cannot be read gets an "error" entry; the others are still
processed; the exit code is 1 if any failed.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fkd.data import IMAGE_EXTS
from fkd.io import files_under, writable
from fkd.zoo import DEFAULT_MODEL, MODELS

PHOTO_EXTS = (*IMAGE_EXTS, ".gif")  # what a folder contributes (load_image reads more, by content)
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".y4m")  # a hint in the error


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
    p.add_argument("images", nargs="+", help="image files, or folders of them")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(MODELS)} (default {DEFAULT_MODEL}), or a weights path")
    p.add_argument("--box", type=parse_box, action="append", help="face box x0,y0,x1,y1 (repeatable); skips the detector")
    p.add_argument("--box-kind", choices=("face", "landmarks"), default="face",
                   help="face: a loose box around the face (like a detector's); landmarks: the tight landmark box")
    add_flip_argument(p)
    p.add_argument("--no-small-faces", dest="small_faces", action="store_false",
                   help="skip the tiles in which the detector looks for faces small in a large picture "
                        "(group photos): faster, by ~8 ms per tile (15 tiles, ~0.12 s, for a 4:3 portrait)")
    p.add_argument("--json", help="write the results here instead of printing them")
    p.add_argument("--csv", help="also write every face's points here: image,face,x0,y0,...,xN,yN (one row per face)")
    p.add_argument("--draw", help="also save each image with its points drawn into this folder")
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
    from fkd.io import ImageError, load_image
    from fkd.results import dumps, image_record, write_csv

    images = expand(args.images)
    problem = next((output_problem(Path(f), images) for f in (args.json, args.csv) if f and output_problem(Path(f), images)),
                   None) or (args.json and args.csv and Path(args.json).resolve() == Path(args.csv).resolve()
                             and "--json and --csv name the same file") or (
        args.draw and not writable(Path(args.draw)) and f"{args.draw}: cannot write there")
    lm = open_checked(problem, args.model, args.flip_test)
    if lm is None:
        return 2
    results, rows, failed = [], [], 0
    # a drawing must not overwrite another, nor an input that is in the drawings' folder
    drawn = {Path(p).name for p in images if args.draw and Path(p).parent.resolve() == Path(args.draw).resolve()}
    for path in images:
        try:
            if Path(path).is_dir():
                raise ImageError(f"{path}: no images in this folder (looked for {' '.join(PHOTO_EXTS)})")
            faces = lm.predict(path, boxes=args.box, box_kind=args.box_kind, small_faces=args.small_faces)
            entry = image_record(faces, path, upright_size(path), lm.name)
            rows += [(path, k, f.keypoints) for k, f in enumerate(faces, 1)]
            if not faces:
                print(f"{path}: no face found", file=sys.stderr)
            if args.draw:
                from fkd.viz import draw_faces, save_png
                Path(args.draw).mkdir(parents=True, exist_ok=True)
                out = Path(args.draw) / unique_name(Path(path).stem + "_keypoints", ".png", drawn)
                save_png(out, draw_faces(load_image(path, max_side=10**6), faces, contours=lm.layout.contours))
                entry["drawing"] = str(out)
        except (ImageError, ValueError) as e:
            failed += 1
            hint = "; for a video, python -m fkd.video" if Path(path).suffix.lower() in VIDEO_EXTS else ""
            entry = {"image": path, "error": f"{e}{hint}"}
            print(f"error: {'' if str(path) in str(e) else f'{path}: '}{entry['error']}", file=sys.stderr)
        results.append(entry)
    text = dumps(results)
    if args.csv:
        write_csv(args.csv, rows)
    if args.json:
        Path(args.json).write_text(text + "\n")
        print(f"wrote {args.json} ({len(results)} image(s), {failed} failed)", file=sys.stderr)
    else:
        print(text)
    lm.close()
    return 1 if failed else 0


def upright_size(path) -> tuple[int, int]:
    """(width, height) of the image as the points see it (a phone photo's EXIF turn applied), from its header."""
    from fkd.io import open_image

    with open_image(path) as im:
        turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        return im.size[::-1] if turned else im.size


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
