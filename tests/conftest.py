import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_minloglevel", "2")

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATA = FIXTURES / "data"
W300 = DATA / "300w"
IMM = DATA / "imm_face_db"
SCORED = FIXTURES / "scored"  # labelled validation faces for the accuracy tests (make_scored.py)
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def val_faces():
    """Fixture faces from the committed validation list (never trained on)."""
    from fkd.data import find_300w, split_300w
    recs, _ = find_300w(W300)
    _, val = split_300w(recs, W300)
    return val


@pytest.fixture(scope="session")
def landmarker():
    import fkd
    lm = fkd.Landmarker()  # the default model
    yield lm
    lm.close()


@pytest.fixture(scope="session")
def face_image():
    """A real 300-W validation face as RGB uint8, and its 68 ground-truth points."""
    from fkd.io import load_image
    r = sorted(val_faces(), key=lambda r: r.image.name)[0]
    return load_image(r.image), r.points


@pytest.fixture(scope="session")
def group_photo(face_image):
    """A 1600×1200 picture of 12 faces, each ~50 px (the fixture face at a quarter of its size), and
    where each face's 68 points belong: faces that vanish when the detectors see the whole picture
    at 128 or 192 px."""
    import cv2
    rgb, gt = face_image
    k = 1 / 4
    small = cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    canvas = np.full((1200, 1600, 3), 90, np.uint8)
    spots = [(60 + 370 * r, 40 + 390 * c) for r in range(3) for c in range(4)]  # (y, x)
    for y, x in spots:
        canvas[y:y + h, x:x + w] = small
    return canvas, [(gt + 0.5) * k - 0.5 + [x, y] for y, x in spots]


def train_stops(argv: list, tmp: Path) -> str:
    """train.py's main() run in-process on `argv` (the fixture data, outputs under `tmp`), expected to
    stop before training: the message it stops with (the script prints it and exits with code 1).
    Without a Python start per case; main()'s SIGTERM handler and torch's seed are put back."""
    import signal
    import torch
    import train
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with torch.random.fork_rng(), pytest.raises(SystemExit) as e:
            train.main(train.parse_args(["--data", str(DATA), "--out", str(tmp / "w"), "--run-dir", str(tmp / "r"),
                                         "--quiet", *map(str, argv)]))
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert isinstance(e.value.code, str), e.value.code  # a message (exit code 1), not a bare code
    return e.value.code


# The browser tests (test_browser.py, test_browser_paths.py): Debian's chromium driven by Playwright.
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
IN_CI = os.environ.get("CI", "").lower() == "true"  # CI must not go green without the browser


@pytest.fixture(scope="module")
def app_url():
    """The app served on a free local port for the module's browser tests."""
    import socket

    from app import LAUNCH_KW, QUEUE_KW, demo
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue(**QUEUE_KW).launch(**LAUNCH_KW, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port,
                                  quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def pytest_configure(config):
    ARTIFACTS.mkdir(exist_ok=True)
