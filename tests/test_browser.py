"""A real browser (Debian's chromium, driven by Playwright; never a downloaded browser) uses the app.

Runs an example in the Keypoints tab and checks the annotated image and the face summary appear,
then morphs an example pair. Screenshots go to tests/artifacts/ for a person to look at.
"""
import contextlib
import os

import numpy as np
import pytest

from conftest import ARGS, ARTIFACTS, CHROMIUM, IMM, IN_CI

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) and not IN_CI,
                                reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def pw():
    """One Playwright driver for the module (sync drivers cannot nest)."""
    sync_api = __import__("playwright.sync_api").sync_api if IN_CI else pytest.importorskip("playwright.sync_api")
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


@contextlib.contextmanager
def webcam_tab(pw, url, clip=None, init_script=None):
    """A Chromium page on the app's Webcam & video tab, and the list its script errors go to. clip: a .y4m
    the fake camera plays; init_script: run in the page before the app's own."""
    camera = [] if clip is None else ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                      f"--use-file-for-fake-video-capture={clip}"]
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS + camera)
    try:
        page = browser.new_context(viewport={"width": 1360, "height": 1000}, permissions=["camera"]).new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        if init_script:
            page.add_init_script(init_script)
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Webcam & video", exact=True).click()
        yield page, errors
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
    with webcam_tab(pw, app_url, tmp_path / "cam.y4m") as (page, errors):
        page.locator("#live-mode").get_by_text("on the server", exact=True).click()  # the fallback of the live mode
        page.get_by_text("Click to Access Webcam").click()
        page.get_by_role("button", name="capture photo").click()      # start streaming
        status = page.locator("#live-status")
        expect(status).to_contain_text("1 face(s)", timeout=60_000)
        expect(status).to_contain_text("frames/s shown", timeout=30_000)
        expect(status).to_contain_text("on the server")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "app_live.png"), full_page=True)
        assert not errors, errors


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


# -- the live mode in the browser (static/live.js) ------------------------------------------------
LIVE_FPS_FLOOR = 12.0   # frames/s: the issue wants >= 25 on these 2-core machines; margin for a busy CI box
LIVE_NME_MAX = 0.5      # % of the outer-eye-corner distance, mean over the recorded frames
LIVE_CPU_MAX = 5.0      # % of one core: the app process while a browser tracks (46 % when it streamed)


def face_clip(path, n=60, fps=30):
    """A fixture face (640×480) swaying left and right, one period over the clip (the fake camera loops it)."""
    from fkd.io import load_image
    face = load_image(IMM / "33-1m.jpg")
    write_y4m(path, [np.roll(face, int(round(24 * np.sin(2 * np.pi * k / n))), 1) for k in range(n)], fps)
    return path


def nme_percent(a, b, eyes=(36, 45)):
    """Mean point distance between two (N, 2) sets, as a percentage of b's outer-eye-corner distance."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return 100 * float(np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(b[eyes[1]] - b[eyes[0]]))


def test_live_mode_runs_in_the_browser(pw, app_url, tmp_path):
    """The live mode follows the fake camera's face in the browser at camera speed, with the Python
    Landmarker's points, while the app process idles."""
    import base64
    import re
    import time

    from playwright.sync_api import expect

    import app
    from fkd.detect import Detection
    from fkd.landmarker import Face
    clip = face_clip(tmp_path / "cam.y4m")
    with webcam_tab(pw, app_url, clip) as (page, errors):
        status = page.locator("#live-browser-status")
        expect(status).to_contain_text("Start the camera", timeout=30_000)
        page.get_by_role("button", name="Start the camera", exact=True).click()
        expect(status).to_contain_text("in your browser", timeout=90_000)
        expect(status).to_contain_text("1 face(s)", timeout=30_000)
        # face68's card names a locator: the browser places a detected face's crop with it too
        assert page.evaluate("() => window.fkdLive.lm.locator.size") == [64, 64]
        page.wait_for_timeout(6000)   # V8 optimises the wasm in the background: slower on a busy machine

        # fps, and the app's CPU time meanwhile (this process serves the app), against the same time idle:
        # Gradio's queue alone polls every millisecond, ~6 % of a core here with no page open
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        cpu0, wall0, fps = time.process_time(), time.monotonic(), []
        for _ in range(10):
            page.wait_for_timeout(500)
            fps.append(page.evaluate("() => window.fkdLive.fps"))
        busy = 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)
        sent = list(requests)
        ms = page.evaluate("() => window.fkdLive.ms")
        shown = re.search(r"(\d+) fps", status.inner_text())
        assert shown, status.inner_text()

        # the same frames through the Python Landmarker: the browser's pixels, the faces it followed
        # (the faces dropped first: the first recorded frame is found by the detector, its points placing the crop)
        page.evaluate("() => { window.fkdLive.record(16); window.fkdLive.faces = []; }")
        page.wait_for_function("() => window.fkdLive.records.length >= 16 && window.fkdLive.recording == 0", timeout=30_000)
        records = page.evaluate("() => window.fkdLive.take()")
        page.screenshot(path=str(tmp_path / "live_browser.png"), full_page=True)
        page.get_by_role("button", name="Stop the camera", exact=True).click()
        page.wait_for_timeout(1000)
        cpu0, wall0 = time.process_time(), time.monotonic()
        page.wait_for_timeout(5000)
        idle = 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)
        print(f"\nlive mode in the browser: {np.median(fps):.0f} fps (samples {fps}), ms per frame {ms}; app process "
              f"{busy:.1f} % of a core while it tracked, {idle:.1f} % idle; {len(sent)} requests to the server")
        assert np.median(fps) >= LIVE_FPS_FLOOR, fps
        assert not sent, f"the page sent requests while the browser tracked: {sent[:5]}"
        assert busy - idle <= LIVE_CPU_MAX, f"the app process used {busy:.1f} % of a core while the browser tracked, {idle:.1f} % idle"

        lm = app.get_landmarker(app.DEFAULT_MODEL)
        errs = []
        for r in records:
            rgb = np.frombuffer(base64.b64decode(r["rgba"]), np.uint8).reshape(r["height"], r["width"], 4)[..., :3].copy()
            assert r["faces"], f"the browser lost the face ({r['kind']})"
            if r["kind"] == "detect":     # found by the browser's detector: Python on its box and points
                (d,) = [d for d in r["found"] if d["box"] == r["faces"][0]["box"]]
                found = Detection(np.asarray(d["box"], np.float32), d["score"],
                                  None if d["marks"] is None else np.asarray(d["marks"], np.float32))
                py = lm.faces_in_boxes(rgb, [found], "face", app.LIVE_FLIP_TEST, lm.min_confidence)
            else:                         # followed from the last frame's points
                prev = [Face(np.asarray(f["box"], np.float32), 1.0, np.asarray(f["points"], np.float32), 1.0)
                        for f in r["prev"]]
                py = lm.track(rgb, prev, app.LIVE_FLIP_TEST)
            assert len(py) == len(r["faces"]), (r["kind"], len(py), len(r["faces"]))
            errs += [nme_percent(b["points"], p.keypoints) for b, p in zip(r["faces"], py)]
        detected = [r for r in records if r["kind"] == "detect"]
        assert detected and all(d["marks"] is not None and len(d["marks"]) == 6 for r in detected for d in r["found"])
        print(f"browser vs Python Landmarker on {len(errs)} faces: NME mean {np.mean(errs):.3f} %, max {np.max(errs):.3f} %")
        assert np.mean(errs) <= LIVE_NME_MAX, errs
        assert not errors, errors


def test_live_mode_falls_back_to_the_server_without_webassembly(pw, app_url):
    """A browser that cannot run the model (here: no WebAssembly) gets the server's streaming at once."""
    from playwright.sync_api import expect
    with webcam_tab(pw, app_url, init_script="delete window.WebAssembly") as (page, errors):
        expect(page.locator("#live-browser-status")).to_contain_text("runs on the server", timeout=30_000)
        expect(page.locator("#live-browser-status")).to_contain_text("no WebAssembly")
        expect(page.locator('#live-mode input[value="on the server"]')).to_be_checked()
        expect(page.get_by_text("Click to Access Webcam")).to_be_visible(timeout=30_000)
        expect(page.locator("#live-browser video")).to_be_hidden()
        assert not errors, errors


def test_the_browsers_crops_and_passes_follow_the_landmarkers(page, face_image):
    """static/live.js and fkd's Landmarker on the same input, without a model (a stub answers each pass):
    the crops (shrunk by 1, 2, 4, 8 first) agree to the pixel's rounding, and a box's re-crop (blended
    with its first reading where near) and a followed face's (never blended) give the same points."""
    import base64
    from dataclasses import asdict

    import app
    import fkd
    from fkd.geometry import apply_affine, crop_matrix, landmark_box, warp

    cfg = app.live_browser_config()
    rgb, gt = face_image
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    frame = {"width": rgb.shape[1], "height": rgb.shape[0], "rgba": base64.b64encode(rgba.tobytes()).decode()}
    c = gt.mean(0)
    mats = []
    for scale, degrees in ((0.9, 0), (0.4, 8), (0.2, -15), (0.1, 30)):
        a = np.deg2rad(degrees)
        R = scale * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        mats.append(np.c_[R, 63.5 - R @ c])

    settings = fkd.Settings(locate=False, recrop_above=0.0, follow_recrop_above=0.0, extra_passes=1, flip_below=0.0)
    lm = fkd.Landmarker(app.DEFAULT_MODEL, flip_test=False, settings=settings)
    box = landmark_box(gt) + [-20, -10, 25, 30]
    first = apply_affine(crop_matrix(landmark_box(gt), lm.crop, lm.input_size), gt).astype(np.float32)
    for off, blended in ((np.float32([0, 0]), True), (np.float32([25, 15]), False)):
        # the stub's points for the first pass (off its crop by `off` input pixels) and the second
        answers = [first + off, first + off + np.float32([1.5, -1.0])]

        def stub(x, answers=answers, calls=[]):
            calls.append(1)
            return answers[(len(calls) - 1) % 2][None], np.float32([0.99])
        lm._runner = stub
        py_box = lm.predict_boxes(rgb, [box], "face", flip_test=False, min_confidence=0.5)[0][0]
        py_follow = lm.track(rgb, [fkd.Face(box, 1.0, gt.astype(np.float32), 1.0)])[0].keypoints
        js = page.evaluate("""async ([url, json, frame, mats, settings, answers, box, gt]) => {
            const m = await import(new URL(url, location.href).href);
            const bytes = Uint8ClampedArray.from(atob(frame.rgba), (ch) => ch.charCodeAt(0));
            const img = { data: bytes, width: frame.width, height: frame.height };
            const crops = mats.map((M) => { const out = new Float32Array(3 * 128 * 128); m.cut(img, M, [128, 128], 3, out); return Array.from(out); });
            const card = await fetch(json).then((r) => r.json());
            let calls = 0;
            const session = { run: async () => { const p = answers[calls++ % 2];
                return { points: { data: Float32Array.from(p.flat()) }, confidence: { data: [0.99] } }; } };
            const model = new m.Model({ Tensor: class { constructor() {} } }, session, card, settings);
            const fromBox = await model.fromBox(img, box, 1.0, 0.5, null);
            calls = 0;
            const followed = await model.follow(img, { box, points: gt, confidence: 1 });
            return { crops, box: fromBox.points, follow: followed.points };
        }""", [cfg["script"], cfg["graphs"][app.DEFAULT_MODEL]["json"], frame, [list(M.reshape(6)) for M in mats],
               asdict(settings) | {"turns": None}, [a.tolist() for a in answers], [float(v) for v in box], gt.tolist()])
        for M, crop in zip(mats, js["crops"]):
            want = warp(rgb, M, (128, 128)).transpose(2, 0, 1).astype(np.float32) / 255 - 0.5
            d = 255 * np.abs(np.asarray(crop, np.float32).reshape(want.shape) - want)
            assert d.max() <= 4 and d.mean() < 0.3, (M, d.max(), d.mean())  # bilinear weights rounded otherwise
        np.testing.assert_allclose(js["box"], py_box, atol=1e-3)
        np.testing.assert_allclose(js["follow"], py_follow, atol=1e-3)
        # the box's re-crop blends only where the two crops lie near; the followed face's never
        for M1, got, blends in ((lm.box_crops([box])[0], py_box, blended), (lm.crop_of(gt), py_follow, False)):
            p1 = lm.to_image(M1, answers[0])
            p2 = lm.to_image(lm.crop_of(p1), answers[1])
            np.testing.assert_allclose(got, (p1 + p2) / 2 if blends else p2, atol=1e-3)
    lm.close()
