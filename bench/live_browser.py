"""The Webcam tab's live mode in the browser against streaming to the server, on the same clip.

    python bench/live_browser.py [--seconds 10] [--out bench/live_browser_report.md]

Starts the app in this process and headless Chromium (Debian's, as tests/test_browser.py) with a fake
camera playing the test's face clip (a fixture face swaying, 640×480 at 30 frames/s). Each mode runs
`--seconds` after a warm-up: "in your browser" (static/live.js: onnxruntime-web + MediaPipe in the
page) and "on the server" (Gradio's streaming webcam, `stream_every=0.1`). Reports the frames per second
each shows (median of two samples a second), the browser's ms per frame (landmarks: the model passes;
detection: a BlazeFace run, twice a second; the whole frame), and the app process's CPU time over the
same seconds, with the app idle (page open, camera off) for comparison.
"""
from __future__ import annotations

import argparse
import datetime
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from common import cpu_name, report_path  # noqa: E402


def cpu_percent(page, seconds: float, sample) -> tuple[float, list[float]]:
    """This process's CPU time as % of one core over `seconds`, and `sample()` twice a second meanwhile."""
    c0, w0, got = time.process_time(), time.monotonic(), []
    for _ in range(int(2 * seconds)):
        page.wait_for_timeout(500)
        got.append(sample())
    return 100 * (time.process_time() - c0) / (time.monotonic() - w0), got


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", type=report_path, default=ROOT / "bench" / "live_browser_report.md")
    a = p.parse_args(argv)

    import tempfile

    from playwright.sync_api import sync_playwright

    import app
    from test_browser import ARGS, CHROMIUM, face_clip

    tmp = Path(tempfile.mkdtemp())
    clip = face_clip(tmp / "cam.y4m")
    demo = app.build_demo()
    demo.queue(**app.QUEUE_KW).launch(**app.LAUNCH_KW, prevent_thread_lock=True, server_name="127.0.0.1",
                                      quiet=True)
    url = demo.local_url
    rows = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS + [
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={clip}"])
            page = browser.new_context(viewport={"width": 1360, "height": 1000}, permissions=["camera"]).new_page()
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Webcam & video", exact=True).click()
            status = page.locator("#live-browser-status")
            status.filter(has_text="Start the camera").wait_for(timeout=60_000)
            page.wait_for_timeout(5000)  # the page's own load events (filters, training tab) are done
            rows["idle"] = cpu_percent(page, a.seconds, lambda: 0)[0]

            page.get_by_role("button", name="Start the camera", exact=True).click()
            status.filter(has_text="face(s)").wait_for(timeout=90_000)
            page.wait_for_timeout(3000)
            cpu, fps = cpu_percent(page, a.seconds, lambda: page.evaluate("() => window.fkdLive.fps"))
            ms = page.evaluate("() => window.fkdLive.ms")
            rows["browser"] = (cpu, fps, ms, status.inner_text())
            page.screenshot(path=str(tmp / "browser.png"))
            page.get_by_role("button", name="Stop the camera", exact=True).click()

            page.locator("#live-mode").get_by_text("on the server", exact=True).click()
            page.get_by_text("Click to Access Webcam").click()
            page.get_by_role("button", name="capture photo").click()
            server = page.locator("#live-status")
            server.filter(has_text="frames/s shown").wait_for(timeout=90_000)
            page.wait_for_timeout(3000)

            def shown() -> float:
                m = re.search(r"([\d.]+) frames/s shown", server.inner_text())
                return float(m.group(1)) if m else 0.0

            cpu, fps = cpu_percent(page, a.seconds, shown)
            line = next((l for l in server.inner_text().splitlines() if "frames/s" in l), "")
            rows["server"] = (cpu, fps, None, line)
            page.screenshot(path=str(tmp / "server.png"))
            browser.close()
    finally:
        demo.close()

    idle = rows["idle"]
    b_cpu, b_fps, ms, b_text = rows["browser"]
    s_cpu, s_fps, _, s_text = rows["server"]
    date = datetime.date.today().isoformat()
    text = "\n".join([
        "# The webcam live mode: in the browser against on the server",
        "",
        f"`python bench/live_browser.py --seconds {a.seconds:g}` on {date}, {cpu_name()}, headless Chromium "
        f"(fake camera: the test's 640×480 face clip at 30 frames/s), model {app.DEFAULT_MODEL}. Frames/s: median "
        f"of two samples a second over {a.seconds:g} s; app CPU: this process's CPU time over the same seconds.",
        "",
        "| mode | frames/s shown | app process, % of a core | browser ms per frame: landmarks / detection / whole frame |",
        "|---|---|---|---|",
        f"| in your browser | {np.median(b_fps):.0f} | {b_cpu:.1f} | {ms['landmarks']:.1f} / {ms['detect']:.1f} / {ms['frame']:.1f} |",
        f"| on the server | {np.median(s_fps):.1f} | {s_cpu:.1f} | – |",
        f"| (page open, camera off) | – | {idle:.1f} | – |",
        "",
        f"Browser samples {b_fps}; server samples {s_fps}. The idle line is Gradio's queue polling (every "
        "millisecond), with or without a viewer. The browser's detection runs twice a second and when the face "
        "is lost; landmarks are the model passes of a frame (a re-crop or a mirrored pass for a face the model "
        "doubts adds one).",
        "",
        f"Status lines: browser \"{b_text}\"; server \"{s_text}\".",
        "",
    ])
    a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
