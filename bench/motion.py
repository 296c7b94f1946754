"""How well following keeps a moving face: a face sliding across a webcam frame, followed as the app does.

    python bench/motion.py [--models face68_accurate face68] [--frames 60]

Validation faces with their labels, each scaled to ~200 px wide, slide back and forth across a 640×480
frame at several speeds (a share of their width per frame, 0 = still): the fixture face in tests/fixtures,
and `--faces` more from the 300-W validation split where the data set is (one face's 60 frames swing with
a grey level of its first crop: its jitter alone can move by a third). After each first detection,
each frame goes through the app's `fkd.stream.Tracker`: the face is cropped from its last points,
read by `Landmarker.track`, given a second pass when it lies off that crop (`Settings.follow_recrop_above`),
and detected again when lost. Each speed runs with and without the second pass. Writes
bench/motion_report.md: NME (inter-ocular) against the moved labels, mean and worst over the frames,
jitter (the points' move from frame to frame unlike the face's, with its standard error over the faces),
the frames lost, and the model's passes per frame. Timings are in bench/stream_report.md, not here.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_name, report_path  # noqa: E402
from fkd.data import DATA_DIR, find_300w, read_pts, split_300w  # noqa: E402
from fkd.evaluate import nearest_face  # noqa: E402
from fkd.geometry import box_side, landmark_box  # noqa: E402
from fkd.io import load_image  # noqa: E402
from fkd.landmarker import Landmarker, Settings  # noqa: E402
from fkd.metrics import nme  # noqa: E402
from fkd.stream import Tracker  # noqa: E402

FACE = ROOT / "tests" / "fixtures" / "helen_2010631499_1"  # .jpg + .pts, a validation face
FRAME_WH, FACE_W = (640, 480), 200
SPEEDS = (0.0, 0.02, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30)  # face widths per frame (0: a still face)


class SlidingFace:
    """The face scaled to FACE_W pixels and moved to any centre x on a FRAME_WH frame, with its labels."""

    def __init__(self, img: np.ndarray, gt: np.ndarray):
        k = FACE_W / box_side(landmark_box(gt))
        self.small = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        self.gt = (gt + 0.5) * k - 0.5  # pixel centres on integers
        b = landmark_box(self.gt)
        self.centre = (b[:2] + b[2:]) / 2

    def at(self, x: float) -> tuple[np.ndarray, np.ndarray]:
        M = np.float32([[1, 0, x - self.centre[0]], [0, 1, FRAME_WH[1] / 2 - self.centre[1]]])
        frame = cv2.warpAffine(self.small, M, FRAME_WH, borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))
        return frame, self.gt + M[:, 2]


def path(speed: float, frames: int) -> list[float]:
    """Centre x per frame: back and forth between a quarter and three quarters of the frame's width."""
    lo, hi, v = FRAME_WH[0] / 4, 3 * FRAME_WH[0] / 4, speed * FACE_W
    xs, x, d = [], lo, 1.0
    for _ in range(frames):
        if not lo <= x + d * v <= hi:
            d = -d
        x += d * v
        xs.append(x)
    return xs


MODES = {"second pass (the app)": Settings(), "one pass": Settings(follow_recrop_above=None)}


def follow(lm: Landmarker, face: SlidingFace, speed: float, frames: int) -> dict[str, float]:
    """Follow the face along its path at 30 frames a second with the app's `Tracker` (no smoothing, no
    look for newcomers): NME % against the moved labels (mean, worst frame), jitter, frames it was lost on,
    passes a frame."""
    tracker = Tracker(strength=0.0, flip_test=False, detect_every_s=float("inf"))
    tracker(lm, face.at(FRAME_WH[0] / 4)[0], lambda: 0.0)  # found by the detector
    errs, shakes, lost = [], [], 0
    last_err = None  # the last frame's points minus its labels
    start = lm.passes  # the model's passes (one face here)
    for k, x in enumerate(path(speed, frames), 1):
        frame, gt = face.at(x)
        got = tracker(lm, frame, lambda: k / 30)
        lost += tracker.last_detect == k / 30  # followed faces lost: the detector looked again
        face_k = nearest_face(got, gt)  # the labelled one: a photo's neighbours may slide in with it
        if face_k is None:
            errs.append(np.nan)
            last_err = None
            continue
        p = np.asarray(face_k.keypoints, np.float64)
        errs.append(100 * float(nme(p[None], gt[None])[0]))
        if last_err is not None:  # jitter: how far the points moved unlike the face, as NME of that move
            shakes.append(100 * float(nme((p - last_err)[None], gt[None])[0]))
        last_err = p - gt
    passes = lm.passes - start
    return {"mean": float(np.nanmean(errs)), "worst": float(np.nanmax(errs)), "jitter": float(np.mean(shakes)) if shakes else float("nan"),
            "lost": lost, "passes": passes / frames}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["face68_accurate", "face68"], help="68-point models (the face's labels)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--speeds", type=float, nargs="+", default=SPEEDS, help="face widths per frame")
    p.add_argument("--faces", type=int, default=19, help="validation faces besides the fixture's (where --data has 300-W)")
    p.add_argument("--data", type=Path, default=DATA_DIR)
    p.add_argument("--out", type=report_path, default=str(ROOT / "bench" / "motion_report.md"))
    a = p.parse_args()
    faces = [SlidingFace(load_image(FACE.with_suffix(".jpg")), read_pts(FACE.with_suffix(".pts")))]
    root, step = a.data / "300w", 0
    if a.faces and root.is_dir():
        _, val = split_300w(find_300w(root)[0], root)
        val = [r for r in val if r.image.stem != FACE.name]
        step = max(1, len(val) // a.faces)
        faces += [SlidingFace(load_image(r.image), r.points) for r in val[::step][:a.faces]]
    lines = ["# Following a moving face", "",
             f"`python bench/motion.py --models {' '.join(a.models)} --frames {a.frames} --speeds {' '.join(map(str, a.speeds))} "
             f"--faces {len(faces) - 1}` on {time.strftime('%Y-%m-%d')}, {cpu_name()}. {len(faces)} validation face{'s' * (len(faces) > 1)} "
             f"(`{FACE.name}`" + (f" and every {step}th of the split's others" if step else "") + f"), each ~{FACE_W} px wide, "
             f"slide back and forth across a {FRAME_WH[0]}×{FRAME_WH[1]} frame, {a.frames} frames per speed at 30 a second, "
             "followed by the app's `Tracker` (no smoothing, no flip test) on a grey frame; a lost face is detected again. "
             "NME % against the moved labels: the mean over faces of each face's mean and worst frame.", "",
             "| model | speed (face widths per frame) | how | NME mean | worst frame | jitter (± standard error) | frames lost | passes per frame |",
             "|---|---|---|---|---|---|---|---|"]
    for name in a.models:
        lms = {how: Landmarker(name, flip_test=False, settings=s) for how, s in MODES.items()}
        for speed in a.speeds:
            for how, lm in lms.items():
                rs = [follow(lm, face, speed, a.frames) for face in faces]
                jit = np.array([r["jitter"] for r in rs])
                se = f" ± {jit.std(ddof=1) / np.sqrt(len(jit)):.3f}" if len(jit) > 1 else ""
                row = (f"| {name} | {speed:.2f} | {how} | {np.mean([r['mean'] for r in rs]):.2f} | "
                       f"{np.mean([r['worst'] for r in rs]):.2f} | {jit.mean():.3f}{se} | "
                       f"{sum(r['lost'] for r in rs)} | {np.mean([r['passes'] for r in rs]):.2f} |")
                print(row, flush=True)
                lines.append(row)
        for lm in lms.values():
            lm.close()
    lines += ["", "Second pass: a face whose new points' crop lies more than `Settings.follow_recrop_above` (a share of the input's side) from the crop "
              "it was read on is read again on that crop. Jitter: how far the points moved from one frame to the next "
              "unlike the face (mean over points and frames, % of the eye-corner distance). Passes per frame: the "
              "model's runs after the first detection."]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
