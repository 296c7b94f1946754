"""A real browser (Debian's chromium, driven by Playwright; never a downloaded browser) uses the app.

Runs an example in the Keypoints tab and checks the annotated image and the face summary appear,
then morphs an example pair. Screenshots go to tests/artifacts/ for a person to look at.
"""
import os
import socket

import numpy as np
import pytest

from conftest import ARTIFACTS, IMM

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def app_url():
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


@pytest.fixture(scope="module")
def pw():
    """One Playwright driver for the module (sync drivers cannot nest)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def page(pw, app_url):
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        pg = browser.new_page(viewport={"width": 1360, "height": 1000})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(app_url, wait_until="domcontentloaded")
        pg.errors = errors
        yield pg
    finally:
        browser.close()


def test_keypoints_example_shows_the_annotated_image(page):
    from playwright.sync_api import expect
    expect(page.get_by_role("tab", name="Keypoints", exact=True)).to_be_visible(timeout=30_000)
    out = page.locator("#kp-out img")
    expect(out).to_have_count(0)                      # nothing before an example runs
    page.locator(".gallery-item").first.click()       # the first example photo
    expect(out.first).to_be_visible(timeout=60_000)
    expect(page.locator("#kp-summary")).to_contain_text("1 face", timeout=30_000)
    assert out.first.evaluate("img => img.naturalWidth") > 100   # a real picture, not a broken link
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "app_keypoints.png"), full_page=True)
    assert not page.errors, page.errors


def test_draw_mode_canvas_empties_when_the_next_upload_is_no_image(page, tmp_path):
    """It kept the last photo, so a user could draw boxes on a picture that was no longer the input."""
    from playwright.sync_api import expect
    page.get_by_role("tab", name="Keypoints", exact=True).click()
    page.get_by_text("draw: I mark the faces", exact=True).click()
    photo = page.locator("[role=tabpanel]:visible input[type=file]").first
    photo.set_input_files(str(IMM / "33-1m.jpg"))
    expect(page.locator("#kp-canvas canvas")).to_have_count(1, timeout=30_000)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo\n" * 20)
    photo.set_input_files(str(text))
    expect(page.locator(".toast-body").first).to_contain_text("notes.jpg: not an image file", timeout=30_000)
    expect(page.locator("#kp-canvas canvas")).to_have_count(0, timeout=30_000)
    page.get_by_text("auto: find every face (MediaPipe)", exact=True).click()
    assert not page.errors, page.errors


def test_morph_example_plays(page):
    from playwright.sync_api import expect
    page.get_by_role("tab", name="Morph", exact=True).click()
    page.locator("[role=tabpanel]:visible tr.tr-body").first.click()  # an example pair fills both photos
    for photo in ("#morph-a img", "#morph-b img"):  # both filled before Morph (the examples table has images too)
        expect(page.locator(photo).first).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Morph", exact=True).click()
    video = page.locator("#morph-video video")
    expect(video).to_be_visible(timeout=90_000)
    page.wait_for_function("() => { const v = document.querySelector('#morph-video video');"
                           " return v && v.readyState >= 2 && v.videoWidth > 0; }", timeout=30_000)
    page.wait_for_timeout(800)
    page.screenshot(path=str(ARTIFACTS / "app_morph.png"), full_page=True)
    assert not page.errors, page.errors


def test_video_file_gets_its_keypoints(page, tmp_path):
    """A video uploaded in the Webcam & video tab comes back drawn, with a summary of its frames."""
    from playwright.sync_api import expect
    from fkd.io import load_image
    from fkd.media import write_mp4
    face = load_image(IMM / "33-1m.jpg")                                  # 640×480
    clip = write_mp4(tmp_path / "clip.mp4", [np.roll(face, 3 * k, 1) for k in range(12)], 12)
    page.get_by_role("tab", name="Webcam & video", exact=True).click()
    page.locator("#video-in input[type=file]").set_input_files(str(clip))
    page.get_by_role("button", name="Put keypoints on the video", exact=True).click()
    expect(page.locator("#video-status")).to_contain_text("12 frames", timeout=90_000)
    expect(page.locator("#video-status")).to_contain_text("12 with a face")
    page.wait_for_function("() => { const v = document.querySelector('#video-out video');"
                           " return v && v.readyState >= 2 && v.videoWidth == 640; }", timeout=30_000)
    page.wait_for_timeout(800)
    page.screenshot(path=str(ARTIFACTS / "app_video.png"), full_page=True)
    assert not page.errors, page.errors


def write_y4m(path, frames, fps=10):
    """Frames (RGB uint8, even sizes) as a YUV4MPEG2 file: what Chromium's fake camera plays."""
    import cv2
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for fr in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(fr, cv2.COLOR_RGB2YUV_I420).tobytes())


def test_live_webcam_streams_keypoints(pw, app_url, tmp_path):
    """Chromium's fake camera plays a face; the Live tab must stream back frames with that face found."""
    from playwright.sync_api import expect
    from fkd.io import load_image
    face = load_image(IMM / "33-1m.jpg")                                  # 640×480
    write_y4m(tmp_path / "cam.y4m", [np.roll(face, 2 * k, 1) for k in range(10)])
    args = ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                   f"--use-file-for-fake-video-capture={tmp_path / 'cam.y4m'}"]
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
    try:
        page = browser.new_context(viewport={"width": 1360, "height": 1000}, permissions=["camera"]).new_page()
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Webcam & video", exact=True).click()
        page.get_by_text("Click to Access Webcam").click()
        page.get_by_role("button", name="capture photo").click()      # start streaming
        status = page.locator("#live-status")
        expect(status).to_contain_text("1 face(s)", timeout=60_000)
        expect(status).to_contain_text("frames/s shown", timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "app_live.png"), full_page=True)
    finally:
        browser.close()


def test_point_numbers_redraw_at_once(page):
    """Ticking 'point numbers' changed nothing until the button was pressed again."""
    from playwright.sync_api import expect
    page.get_by_role("tab", name="Keypoints", exact=True).click()
    out = page.locator("#kp-out img")
    if not out.count():
        page.locator(".gallery-item").first.click()
    expect(out.first).to_be_visible(timeout=60_000)
    expect(page.locator("#kp-numbers input")).not_to_be_checked()   # off by default
    before = out.first.get_attribute("src")
    page.locator("#kp-numbers input").check()
    page.wait_for_function("before => { const i = document.querySelector('#kp-out img'); return i && i.src != before; }",
                           arg=before, timeout=30_000)
    assert not page.errors, page.errors


@pytest.mark.parametrize("width", [1280, 390])
def test_webcam_model_label_fits(pw, app_url, width):
    """The webcam tab's model dropdown cut its label ('…the most accurc'), on a phone too."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Keypoints", exact=True).wait_for(timeout=30_000)
        tab = page.get_by_role("tab", name="Webcam & video", exact=True)
        if not tab.is_visible():  # a phone: the other tabs are under "More tabs"
            page.get_by_role("button", name="More tabs", exact=True).click()
            tab = page.locator(".overflow-dropdown button", has_text="Webcam & video")
        tab.click()
        box = page.locator("#live-model input")
        box.wait_for(timeout=30_000)
        assert box.input_value().startswith("face68")
        assert box.evaluate("e => e.scrollWidth <= e.clientWidth"), box.evaluate("e => [e.scrollWidth, e.clientWidth]")
        box.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / f"app_webcam_{width}.png"), full_page=False)
    finally:
        browser.close()
