"""How fast the app feels: medians of the three things a user waits for. Writes bench/app_report.md.

    python bench/app_bench.py [--repeats 15] [--threads 1]

1. `/keypoints` round trip: gradio_client → local server → detect + 68 points + drawing + files → client,
   on a 640×480 photo (upload and download included).
2. Webcam pipeline, in-process: one 640×480 frame through detect + landmarks + One-Euro + drawing
   (what each streamed frame costs the server; network not included).
3. Morph: two photos → 60 frames at 512×512 (the warp/blend loop alone, and end to end with
   detection, alignment, mp4 and GIF encoding).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_name, report_path, timed  # noqa: E402
from fkd.landmarker import DEFAULT_MODEL  # noqa: E402  (the model the app opens with)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    p.add_argument("--out", type=report_path, default=str(ROOT / "bench" / "app_report.md"))
    a = p.parse_args(argv)
    os.environ["FKD_TORCH_THREADS"] = str(a.threads)

    import cv2
    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    from gradio_client import Client, handle_file

    import app
    from fkd import media, morph
    from fkd.io import load_image

    photo = ROOT / "tests" / "fixtures" / "data" / "imm_face_db" / "33-1m.jpg"   # 640×480, a validation person
    frame = load_image(photo)
    assert frame.shape[:2] == (480, 640), frame.shape
    rows = []

    # 1. /keypoints round trip through a real server
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.demo.queue(**app.QUEUE_KW).launch(**app.LAUNCH_KW, prevent_thread_lock=True, server_name="127.0.0.1",
                                          server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        t = timed(lambda: client.predict(handle_file(str(photo)), "auto", DEFAULT_MODEL, api_name="/keypoints"), a.repeats, 2)
        rows.append(("`/keypoints` round trip, 640×480 photo, gradio_client", t, "s"))
    finally:
        app.demo.close()

    # 2. webcam pipeline in-process: slightly moving frames, one session
    rng = np.random.default_rng(0)
    frames = [np.roll(frame, (int(dy), int(dx)), (0, 1)) for dy, dx in rng.integers(-3, 4, (max(30, a.repeats), 2))]
    state = None
    times = []
    for f in frames:
        t0 = time.perf_counter()
        _, _, state = app.live_step(f, DEFAULT_MODEL, 0.5, state)
        times.append(time.perf_counter() - t0)
    times = times[3:]
    rows.append(("webcam frame, 640×480: 68 points (the face followed, the detector twice a second) + One-Euro + draw", times, "fps"))

    # 3. morph of two 512×512 photos into 60 frames
    pa_path, pb_path = ROOT / "examples" / "helen_1466887621_1.jpg", ROOT / "examples" / "helen_1238081332_1.jpg"
    img_a, pts_a = app.largest_face(str(pa_path), "photo 1")
    img_b, pts_b = app.largest_face(str(pb_path), "photo 2")
    A, PA, B, PB = morph.align_pair(img_a, pts_a, img_b, pts_b, 512)
    reps = max(3, a.repeats // 3)
    rows.append(("morph, 60 frames at 512×512 (warp + blend only)", timed(lambda: morph.morph_frames(A, PA, B, PB, 60), reps), "s"))
    frames60 = morph.morph_frames(A, PA, B, PB, 60)
    with tempfile.TemporaryDirectory() as d:
        rows.append(("encoding those 60 frames: mp4 (h264)", timed(
            lambda: media.write_mp4(Path(d) / "m.mp4", frames60, 24), reps), "s"))
        rows.append(("encoding those 60 frames: GIF (256 px)", timed(
            lambda: media.write_gif(Path(d) / "m.gif", frames60, 24), reps), "s"))
    rows.append(("morph end to end: 2 photos → 60 frames → mp4 + GIF (`make_morph`)", timed(
        lambda: app.make_morph(str(pa_path), str(pb_path), 60, 24, False), reps), "s"))

    lines = ["# App benchmark", "",
             f"`python bench/app_bench.py --repeats {a.repeats} --threads {a.threads}` on {cpu_name()}, "
             f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {a.threads} thread(s); "
             f"load average at the end {os.getloadavg()[0]:.1f} (other jobs on the machine slow every number).", "",
             "| what | median | p90 | runs |", "|---|---|---|---|"]
    for name, t, unit in rows:
        med, p90 = statistics.median(t), float(np.percentile(t, 90))
        if unit == "fps":
            cell = f"{1000 * med:.1f} ms ({1 / med:.0f} frames/s)"
            cell90 = f"{1000 * p90:.1f} ms"
        else:
            cell, cell90 = f"{med:.3f} s", f"{p90:.3f} s"
        lines.append(f"| {name} | {cell} | {cell90} | {len(t)} |")
    lines += ["", "The webcam figure is server time per frame; the rate a browser sees is also bounded by the",
              "stream interval (0.1 s) and the network round trip."]
    text = "\n".join(lines) + "\n"
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
