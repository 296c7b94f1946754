"""What a webcam frame costs the server: faces followed from frame to frame, or detected on every frame.

    python bench/stream.py [--frames 60] [--threads 1]

Four 640×480 streams through the app's `live_step` (landmarks + One-Euro + drawing, and the detector
when it is due), each `--frames` frames of one still: a sharp face, the same face defocused
(Gaussian blur σ 6.5: found, but below the 0.97 (`Settings.search_below`) under which the search of turned
copies starts), the face lying down (turned 90°: only the search finds it) and an empty frame. Each
stream runs three ways: as the app does (`fkd.stream.Tracker`: faces followed from their last points,
the detector twice a second and when a face is lost, the search paced by `SearchPacer`), with the
detector on every frame and the search paced (`Tracker(follow=False)`, the app before following),
and with the detector and the search on every frame (before the pacer). Writes
bench/stream_report.md: mean and p90 ms per frame, and the mean number of faces found per frame.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_name, report_path, webcam_frame  # noqa: E402
from fkd.geometry import turned_image  # noqa: E402
from fkd.io import load_image  # noqa: E402

PHOTO = ROOT / "tests" / "fixtures" / "data" / "300w" / "afw" / "2086996835_3.jpg"  # a validation face


MODES = {"followed (the app)": dict(), "detector every frame, search paced": dict(follow=False),
         "detector and search every frame": dict(follow=False, every_s=0.0)}


def run_stream(app, frame: np.ndarray, n: int, follow: bool = True, every_s: float | None = None) -> tuple[list[float], float]:
    state = app.LiveSession()
    state.tracker.follow = follow
    if every_s is not None:
        state.tracker.pacer.every_s = every_s  # 0: due on every frame, the search runs whenever no face is sure
    ms, found = [], []
    app.live_step(frame, app.DEFAULT_MODEL, 0.5, app.LiveSession())  # warm-up, another session
    for _ in range(n):
        t = time.perf_counter()
        _, text, state = app.live_step(frame, app.DEFAULT_MODEL, 0.5, state)
        ms.append(1000 * (time.perf_counter() - t))
        found.append(int(text.rsplit("· ", 1)[1].split()[0]))
    return ms, float(np.mean(found))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    p.add_argument("--out", type=report_path, default=str(ROOT / "bench" / "stream_report.md"))
    a = p.parse_args()
    os.environ["FKD_TORCH_THREADS"] = str(a.threads)  # as bench/app_bench.py: the app's own setting
    import torch
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    import app

    face = load_image(PHOTO)
    streams = {"sharp face": webcam_frame(face),
               "defocused face (σ 6.5)": cv2.GaussianBlur(webcam_frame(face), (0, 0), 6.5 * 480 / face.shape[0]),
               "face lying down (90°)": webcam_frame(turned_image(face, 90)[0]),
               "no face": np.full((480, 640, 3), 90, np.uint8)}
    lm = app.get_landmarker(app.DEFAULT_MODEL)
    lines = ["# Webcam frames: faces followed, the detector and the search of turned copies", "",
             f"`python bench/stream.py --frames {a.frames} --threads {a.threads}` on {time.strftime('%Y-%m-%d')}, "
             f"{cpu_name()}, model {app.DEFAULT_MODEL} on {lm.backend}, flip test '{app.LIVE_FLIP_TEST}'. "
             "Server time per frame of the app's `live_step` (landmarks + One-Euro + drawing, the detector when due), "
             f"{a.frames} frames of each still after one warm-up frame.", "",
             "| stream | model confidence | how | ms per frame, mean | p90 | faces per frame |", "|---|---|---|---|---|---|"]
    for name, frame in streams.items():
        conf = ", ".join(f"{f.confidence:.3f}" for f in lm.predict(frame, search=False)) or "no face upright"
        for mode, kw in MODES.items():
            ms, found = run_stream(app, frame, a.frames, **kw)
            row = f"| {name} | {conf} | {mode} | {np.mean(ms):.1f} | {np.percentile(ms, 90):.1f} | {found:.2f} |"
            print(row, flush=True)
            lines.append(row)
    lines += ["", "Followed (fkd/stream.py, `Tracker`): a face found once is cropped from its last points on the next "
              "frame (no detector, no search); the detector looks twice a second for newcomers and whenever a face is "
              "lost. Paced (`SearchPacer`): the search of turned copies runs once per second while it finds nothing the "
              "upright pass missed, and on every frame while it is what finds the faces, between full searches only in "
              "their copies."]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
