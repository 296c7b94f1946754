"""Keypoints for a video file, frame by frame, through the webcam's pipeline (fkd.stream.Tracker).

    python -m fkd.video clip.mp4 [--out clip_keypoints.mp4] [--json points.json] [--model NAME]
                        [--smoothing 0.5] [--flip-test auto|on|off] [--max-frames N]

As on the webcam, faces are found once and then followed from frame to frame (the detector looks
again twice a second and when a face is lost; the search of turned copies is paced), and the points
are smoothed (One-Euro) on the video's own clock (frame i at i / fps seconds), so they hold still on
a still face however fast or slow the machine is. Writes the video with its points drawn (h264, plays in a
browser; the sound is not kept; default `<clip>_keypoints.mp4` beside the clip) and, with `--json`,
{"video": path, "fps": f, "frames": [{"frame": i, "time": s, "faces": [...]}]}, the faces as in
`fkd.predict` (0-based pixels). Exit code 1 if the video could not be read (or stops early: what was
read is kept), 2 if the model or an output cannot be opened.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from itertools import islice
from pathlib import Path

import numpy as np

from fkd.flags import bounded
from fkd.io import ImageError
from fkd.landmarker import Face, Landmarker
from fkd.media import first_line, read_video, write_mp4
from fkd.predict import FLIP_CHOICES, add_flip_argument, open_checked, output_problem
from fkd.stream import Tracker
from fkd.viz import draw_faces
from fkd.zoo import DEFAULT_MODEL, MODELS


def track_video(lm: Landmarker, frames: Iterable[np.ndarray], fps: float, strength: float = 0.5,
                flip_test="auto") -> Iterator[tuple[int, float, np.ndarray, list[Face]]]:
    """(frame index, time in seconds, frame, faces) for each frame, through one Tracker."""
    tracker = Tracker(strength, flip_test)
    for i, frame in enumerate(frames):
        t = i / fps
        yield i, t, frame, tracker(lm, frame, lambda: t)


def annotate(lm: Landmarker, frames: Iterable[np.ndarray], fps: float, out: Path | None, strength: float = 0.5,
             flip_test="auto", contours: Sequence = (), on_frame: Callable[[int], None] | None = None,
             scale: float = 1.0) -> tuple[list[dict], str | None]:
    """Every frame tracked and drawn into `out` (h264, streamed; None: not written).

    Returns the per-frame records {"frame", "time", "faces"} and None, or, when the video turns out
    damaged partway, the records of the frames read (written too) and the error's message.
    `on_frame(i)` is called after each frame (progress). `scale`: the records' pixels are the frames'
    times this (frames shrunk by 1/scale for speed give points in the video's own pixels)."""
    records: list[dict] = []

    def drawn() -> Iterator[np.ndarray]:
        for i, t, frame, faces in track_video(lm, frames, fps, strength, flip_test):
            records.append({"frame": i, "time": round(t, 4),
                            "faces": [replace(f, box=f.box * scale, keypoints=f.keypoints * scale).to_dict() for f in faces]})
            if on_frame is not None:
                on_frame(i)
            yield draw_faces(frame, faces, contours=contours)

    try:
        if out is not None:
            write_mp4(out, drawn(), fps)
        else:
            for _ in drawn():
                pass
    except ImageError as e:
        return records, str(e)
    return records, None


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fkd.video", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", help="a video file (mp4, mov, webm, avi, mkv, ...)")
    p.add_argument("--out", help="the video with its points drawn (default: <video>_keypoints.mp4 beside it; "
                                 "'-' for none)")
    p.add_argument("--json", help="also write every frame's faces here")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(MODELS)} (default {DEFAULT_MODEL}), or a weights path")
    p.add_argument("--smoothing", type=bounded(float, 0, 1), default=0.5, help="0 (raw points) to 1 (steadiest), as the app's slider")
    add_flip_argument(p)
    p.add_argument("--max-frames", type=bounded(int, 1), default=None, help="stop after this many frames")
    p.add_argument("--no-contours", action="store_true", help="points only, no connecting lines")
    return p


def outputs_problem(src: Path, out: Path | None, json_path: Path | None) -> str | None:
    """Why the drawn video (`out`, None for none) or the JSON cannot be written, or None."""
    if out is not None and out.suffix.lower() != ".mp4":
        return f"--out {out} must be an .mp4 file (the video is written as h264 in mp4, what browsers play)"
    if out is not None and json_path is not None and json_path.resolve() == out.resolve():
        return f"--json and --out name the same file, {out}"
    return next((p for p in (t and output_problem(t, [src]) for t in (out, json_path)) if p), None)


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    src = Path(args.video)
    out = None if args.out == "-" else Path(args.out or src.with_name(src.stem + "_keypoints.mp4"))
    lm = open_checked(outputs_problem(src, out, args.json and Path(args.json)), args.model, args.flip_test)
    if lm is None:
        return 2
    try:
        fps, frames = read_video(src)
    except ImageError as e:
        lm.close()
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.max_frames is not None:
        frames = islice(frames, args.max_frames)
    t0 = time.perf_counter()

    def progress(i: int) -> None:
        if (i + 1) % 100 == 0:
            print(f"{i + 1} frames, {(i + 1) / (time.perf_counter() - t0):.1f} per second", file=sys.stderr)

    try:
        records, error = annotate(lm, frames, fps, out, args.smoothing, FLIP_CHOICES[args.flip_test],
                                  () if args.no_contours else lm.layout.contours, progress)
    except (OSError, RuntimeError) as e:  # ffmpeg could not write (disk full, ...): no half file left
        out.unlink(missing_ok=True)
        print(f"error: cannot write {out} ({first_line(e)})", file=sys.stderr)
        return 2
    finally:
        lm.close()
    if error:  # damaged partway: what was read is written
        print(f"error: {error}", file=sys.stderr)
    with_face = sum(bool(r["faces"]) for r in records)
    print(f"{len(records)} frames ({with_face} with a face) in {time.perf_counter() - t0:.1f} s"
          + (f", wrote {out}" if out is not None and records else ""), file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"video": str(src), "fps": fps, "frames": records}) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 1 if error or not records else 0


if __name__ == "__main__":
    sys.exit(main())
