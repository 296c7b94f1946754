"""The Gradio app end to end: a real server on 127.0.0.1, called with gradio_client like a user's script.

Also the parts a browser cannot see: bad and hostile inputs, per-request files, per-session state.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import httpx
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, W300, val_faces

from fkd.landmarker import DEFAULT_MODEL, Face

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_module():
    import app
    return app


@pytest.fixture(scope="module")
def server(app_module):
    port = free_port()
    app_module.demo.queue(**app_module.QUEUE_KW).launch(
        **app_module.LAUNCH_KW, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app_module.demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


@pytest.fixture(scope="module")
def faces():
    """Two validation faces (never trained on) with their ground-truth points."""
    return sorted(val_faces(), key=lambda r: r.image.name)[:2]


def nme(pred, gt) -> float:
    return float(np.linalg.norm(np.asarray(pred) - gt, axis=1).mean() / np.linalg.norm(gt[36] - gt[45]))


def check_faces(result: dict, gt: np.ndarray | None = None, n_points: int = 68):
    assert result["faces"], "no face found"
    for f in result["faces"]:
        k, (x0, y0, x1, y1) = np.array(f["keypoints"]), f["box"]
        assert k.shape == (n_points, 2)
        # BlazeFace's box stops above the chin: allow 15 % of its side around it
        m = 0.15 * max(x1 - x0, y1 - y0)
        assert (k[:, 0] >= x0 - m).all() and (k[:, 0] <= x1 + m).all(), "points left/right of the face box"
        assert (k[:, 1] >= y0 - m).all() and (k[:, 1] <= y1 + m).all(), "points above/below the face box"
        assert (k[:, 0] >= x0).mean() > 0.8 and ((k[:, 1] >= y0) & (k[:, 1] <= y1)).mean() > 0.8
    if gt is not None:
        best = min(nme(f["keypoints"], gt) for f in result["faces"])
        assert best < 0.10, f"NME {100 * best:.1f} % vs ground truth"


# -----------------------------------------------------------------------------------------------
# named endpoints

def test_endpoints_are_named(client):
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/keypoints", "/morph", "/filters", "/video"} <= set(named)


def test_keypoints_endpoint_on_real_photos(client, faces):
    for r in faces:
        image, result = client.predict(handle_file(str(r.image)), "auto", "face68_accurate", api_name="/keypoints")
        w, h = Image.open(r.image).size
        assert (result["width"], result["height"]) == (w, h)
        check_faces(result, r.points)
        out = iio.imread(image)
        assert out.ndim == 3 and out.shape[:2] == (h, w)  # small photo: drawn at full size
        assert not np.array_equal(out[..., :3], np.asarray(Image.open(r.image).convert("RGB"))), "nothing drawn"
        assert "/tmp" not in json.dumps(result) and str(ROOT) not in json.dumps(result)
    # photos get the mirrored second pass (the library's default is one pass)
    import fkd
    lm = fkd.Landmarker("face68_accurate", flip_test=True)
    want = lm.predict(str(faces[0].image))
    lm.close()
    _, result = client.predict(handle_file(str(faces[0].image)), "auto", "face68_accurate", api_name="/keypoints")
    assert np.abs(np.array(result["faces"][0]["keypoints"]) - want[0].keypoints).max() < 0.02


def test_the_model_lists_name_the_default_on_this_cpu(app_module):
    labels = dict((m, label) for label, m in app_module.model_choices())
    assert [m for m, label in labels.items() if "(default)" in label] == [DEFAULT_MODEL]
    assert not any("no weights yet" in label for label in labels.values())


def test_keypoints_defaults_and_other_models(client, faces):
    path = handle_file(str(faces[0].image))
    _, result = client.predict(path, api_name="/keypoints")  # box mode and model have defaults
    assert result["model"] == DEFAULT_MODEL and len(result["faces"][0]["keypoints"]) == 68
    _, imm = client.predict(path, "auto", "imm58", api_name="/keypoints")
    check_faces(imm, n_points=58)
    _, nose = client.predict(path, "auto", "nose", api_name="/keypoints")
    assert len(nose["faces"][0]["keypoints"]) == 1
    # the nose tip sits between the eyes and the mouth of the 68-point answer
    k68, tip = np.array(result["faces"][0]["keypoints"]), np.array(nose["faces"][0]["keypoints"][0])
    assert np.linalg.norm(tip - k68[30]) < 0.5 * np.linalg.norm(k68[36] - k68[45])


def test_keypoints_with_drawn_boxes(client, faces):
    r = faces[0]
    lo, hi = r.points.min(0), r.points.max(0)
    pad = 0.15 * (hi - lo)
    box = [float(v) for v in (*(lo - pad), *(hi + pad))]
    _, result = client.predict(handle_file(str(r.image)), "draw", "face68_accurate", json.dumps([box]), api_name="/keypoints")
    assert len(result["faces"]) == 1 and result["faces"][0]["score"] == 1.0
    check_faces(result, r.points)


def test_box_outside_the_image_is_a_clear_error(client, faces):
    with pytest.raises(AppError, match="outside"):
        client.predict(handle_file(str(faces[0].image)), "draw", "face68_accurate", "[[5000, 5000, 6000, 6000]]",
                       api_name="/keypoints")
    with pytest.raises(AppError, match="needs boxes"):
        client.predict(handle_file(str(faces[0].image)), "draw", "face68_accurate", "", api_name="/keypoints")
    with pytest.raises(AppError, match="JSON"):
        client.predict(handle_file(str(faces[0].image)), "draw", "face68_accurate", "[[1, 2", api_name="/keypoints")
    for bad in ("[0, 0, 100, 100, 5]", "[[true, 0, 100, 100]]", '[[0, 0, "100", 100]]'):
        with pytest.raises(AppError, match="a box needs four numbers"):
            client.predict(handle_file(str(faces[0].image)), "draw", "face68_accurate", bad, api_name="/keypoints")


def test_bad_image_is_a_message_not_a_crash(client, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is not a photo\n" * 20)
    with pytest.raises(AppError, match="holiday.jpg: not an image"):
        client.predict(handle_file(str(fake)), "auto", "face68_accurate", api_name="/keypoints")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(open(W300 / "afw" / "2086996835_3.jpg", "rb").read()[:3000])
    with pytest.raises(AppError, match="cut.jpg"):
        client.predict(handle_file(str(truncated)), "auto", "face68_accurate", api_name="/keypoints")
    # the server still works afterwards
    _, result = client.predict(handle_file(str(W300 / "afw" / "2086996835_3.jpg")), api_name="/keypoints")
    assert result["faces"]


def test_no_face_is_an_empty_answer(client, tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank)
    image, result = client.predict(handle_file(str(blank)), api_name="/keypoints")
    assert result["faces"] == [] and iio.imread(image).shape[:2] == (240, 320)


def test_huge_photo_is_downscaled_not_refused(client, faces, tmp_path):
    r = faces[0]
    im = Image.open(r.image)
    s = 5200 / im.width
    big = tmp_path / "big.jpg"
    im.resize((5200, round(im.height * s)), Image.BILINEAR).save(big, quality=80)
    image, result = client.predict(handle_file(str(big)), api_name="/keypoints")
    assert result["width"] == 5200
    check_faces(result, r.points * s + (s - 1) / 2)  # full-size pixels, not those of the working copy
    assert max(iio.imread(image).shape[:2]) <= 1280   # the picture sent back is browser-sized


def test_upload_size_is_capped(client, server, tmp_path):
    """The server refuses a file over the cap before reading it as a photo (without the cap, this one
    reached the image check and failed as "not an image"); gradio_client, told the cap, refuses it too."""
    cap = 20 * 2**20  # bytes: the app's cap (LAUNCH_KW), well above any phone photo
    over = b"\xff\xd8\xff" + b"\0" * cap  # a JPEG header, then padding past the cap
    answer = httpx.post(f"{server}/gradio_api/upload", files={"files": ("huge.jpg", over, "image/jpeg")}, timeout=60)
    assert answer.status_code == 413 and f"maximum allowed size of {cap} bytes" in answer.text, answer.text[:200]
    small = httpx.post(f"{server}/gradio_api/upload", files={"files": ("small.jpg", over[:1024], "image/jpeg")}, timeout=60)
    assert small.status_code == 200   # the size, not the content, was refused
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(over)
    with pytest.raises(ValueError, match=f"huge.jpg exceeds the maximum file size of {cap} bytes"):
        client.predict(handle_file(str(huge)), api_name="/keypoints")


def test_an_upload_of_too_many_pixels_is_refused_from_its_header(client, tmp_path):
    """gr.Image decoded a 438-KB PNG of 400 megapixels in full (8 s, 1.2 GB) before our check."""
    from test_bad_input import png_claiming_size
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming_size(20000, 20000))  # decoding would fail as truncated, not as too large
    with pytest.raises(AppError, match=r"bomb.png: the image is too large \(20000×20000 pixels; at most 256 megapixels\)"):
        client.predict(handle_file(str(bomb)), api_name="/keypoints")


def test_server_files_are_never_read(client, server):
    # a file the client holds is uploaded and checked: not an image
    with pytest.raises(AppError, match="not an image") as e:
        client.predict(handle_file("/etc/passwd"), api_name="/keypoints")
    assert "root:" not in str(e.value)
    # a bare string is not a file reference (refused by Gradio's input check, whose detail is not shown)
    with pytest.raises(AppError, match="has raised an exception but has not enabled verbose error reporting") as e:
        client.predict("/etc/passwd", api_name="/keypoints")
    assert "root:" not in str(e.value)
    # raw HTTP naming server paths (outside the upload folder): refused, even for real images
    for path in ("/etc/passwd", str(W300 / "afw" / "2086996835_3.jpg"), str(ROOT / "examples" / "breakingbad.jpg")):
        job = httpx.post(f"{server}/gradio_api/call/keypoints",
                         json={"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, "auto", "face68_accurate", ""]})
        answer = httpx.get(f"{server}/gradio_api/call/keypoints/{job.json()['event_id']}", timeout=60).text
        assert "event: error" in answer and "faces" not in answer and "root:" not in answer, answer[:200]
    for path in ("/etc/passwd", str(ROOT / "app.py"), str(ROOT / "weights" / "face68.json")):
        assert httpx.get(f"{server}/gradio_api/file={path}").status_code in (403, 404)


def test_unknown_model_is_refused(client, faces):
    with pytest.raises(AppError, match=r"Value: \.\./\.\./etc/passwd is not in the list of choices: \['face68'"):
        client.predict(handle_file(str(faces[0].image)), "auto", "../../etc/passwd", api_name="/keypoints")


def test_morph_endpoint_gives_a_playable_video(client, app_module, faces):
    from fkd import morph
    pa, pb = str(faces[0].image), str(faces[1].image)
    video = client.predict(handle_file(pa), handle_file(pb), 6, 12, False, api_name="/morph")
    frames = iio.imread(video)
    meta = iio.immeta(video)
    assert meta.get("codec") == "h264" and abs(meta.get("fps", 12) - 12) < 0.5
    assert frames.shape == (6, app_module.MORPH_SIZE, app_module.MORPH_SIZE, 3)
    # the same alignment in-process: first frame = aligned photo 1, last = aligned photo 2
    img_a, pts_a = app_module.largest_face(pa, "photo 1")
    img_b, pts_b = app_module.largest_face(pb, "photo 2")
    a, _, b, _ = morph.align_pair(img_a, pts_a, img_b, pts_b, app_module.MORPH_SIZE)
    diff = lambda x, y: float(np.abs(x.astype(np.float32) - y.astype(np.float32)).mean())  # noqa: E731
    assert diff(frames[0], a) < 6 and diff(frames[-1], b) < 6, (diff(frames[0], a), diff(frames[-1], b))
    assert diff(frames[0], b) > 3 * diff(frames[0], a)   # the ends really are different faces
    mid = diff(frames[3], a), diff(frames[3], b)
    assert min(mid) > 2, "the middle frame is just one of the photos"
    back = iio.imread(client.predict(handle_file(pa), handle_file(pb), 5, 10, True, api_name="/morph"))
    assert len(back) == 8 and diff(back[-1], a) < diff(back[-1], b)


def test_morph_tab_gives_the_video_and_its_gif_and_the_api_the_video_only(app_module, faces):
    pa, pb = str(faces[0].image), str(faces[1].image)
    tri_a, tri_b, video, gif, text = app_module.make_morph(pa, pb, 5, 10, False)
    frames, small = iio.imread(video), np.stack([f[..., :3] for f in iio.imiter(gif)])
    assert len(frames) == len(small) == 5 and small.shape[1:3] == (256, 256)
    assert "5 frames at 10 fps" in text and "same 5 frames" in text
    for f, g in zip(frames, small):  # the same frames, downscaled (encoded while the mp4 was)
        ref = cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32)
        assert np.abs(ref - g).mean() < 8
    video2 = app_module.morph_api(pa, pb, 5, 10, False)
    assert [p.name for p in Path(video2).parent.iterdir()] == ["morph.mp4"]


def test_morph_whose_encoders_both_fail_logs_both_errors(app_module, faces, monkeypatch, caplog):
    import gradio as gr
    def broken(what):
        def write(*args, **kwargs):
            raise OSError(f"{what} encoder broke")
        return write
    monkeypatch.setattr(app_module.media, "write_mp4", broken("mp4"))
    monkeypatch.setattr(app_module.media, "write_gif", broken("gif"))
    *outputs, status = app_module.morph_ui(str(faces[0].image), str(faces[1].image), 3, 10, False)
    assert outputs == [None] * 4 and "Something went wrong on our side" in status   # one message, not four errors
    logged = caplog.text
    assert "mp4 encoder broke" in logged and "gif encoder broke" in logged


def test_video_endpoint_gives_the_drawn_video_and_every_frames_points(client, app_module, tmp_path, monkeypatch):
    from fkd.media import read_video, write_mp4
    face = app_module.load_image(str(ROOT / "tests" / "fixtures" / "data" / "imm_face_db" / "33-1m.jpg"))  # 640×480
    clip = write_mp4(tmp_path / "clip.mp4", [np.roll(face, 3 * k, 1) for k in range(8)], 10)
    monkeypatch.setattr(app_module, "VIDEO_MAX_S", 0.6)  # 6 of the 8 frames
    video, points = client.predict(handle_file(str(clip)), DEFAULT_MODEL, 0.0, api_name="/video")
    drawn, plain = np.stack(list(read_video(video)[1])), np.stack(list(read_video(clip)[1]))[:6]
    assert drawn.shape == plain.shape == (6, 480, 640, 3)
    assert np.abs(drawn.astype(float) - plain).mean() > 0.3  # the points are drawn in
    d = json.loads(Path(points).read_text())
    assert d["video"] == "clip.mp4" and d["fps"] == 10 and [f["frame"] for f in d["frames"]] == list(range(6))
    # smoothing 0: the first frame's points are the photo answer; the others, followed from the frame
    # before (their landmark box, not the detector's), agree with it to 1.5 % of the eye distance
    lm = app_module.get_landmarker(DEFAULT_MODEL)
    for k in (0, 5):
        ref = lm.predict(plain[k], flip_test=app_module.LIVE_FLIP_TEST)[0].keypoints
        got = np.array(d["frames"][k]["faces"][0]["keypoints"])
        if k == 0:
            np.testing.assert_allclose(got, ref, atol=0.01)
        assert np.linalg.norm(got - ref, axis=1).mean() < 0.015 * np.linalg.norm(ref[36] - ref[45])
    x = [np.mean(np.array(f["faces"][0]["keypoints"])[:, 0]) for f in d["frames"]]
    assert abs(x[5] - x[0] - 15) < 2


def test_video_points_are_in_the_videos_own_pixels_when_frames_are_shrunk(app_module, tmp_path, monkeypatch):
    from fkd.media import read_video, write_mp4
    face = app_module.load_image(str(ROOT / "tests" / "fixtures" / "data" / "imm_face_db" / "33-1m.jpg"))  # 640×480
    clip = write_mp4(tmp_path / "clip.mp4", [face] * 3, 10)
    monkeypatch.setattr(app_module, "DISPLAY_SIDE", 320)   # frames worked on at half size
    video, points, _ = app_module.annotate_video(str(clip), DEFAULT_MODEL, 0.0)
    assert next(read_video(video)[1]).shape == (240, 320, 3)
    d = json.loads(Path(points).read_text())
    assert (d["width"], d["height"]) == (640, 480)
    ref = app_module.get_landmarker(DEFAULT_MODEL).predict(next(read_video(clip)[1]))[0].keypoints
    got = np.array(d["frames"][0]["faces"][0]["keypoints"])
    assert np.linalg.norm(got - ref, axis=1).mean() < 0.03 * np.linalg.norm(ref[36] - ref[45])


def test_video_endpoint_refuses_what_is_not_a_video(client, tmp_path):
    bad = tmp_path / "holiday.mp4"
    bad.write_text("not a video")
    with pytest.raises(AppError, match="holiday.mp4: cannot be read as a video"):
        client.predict(handle_file(str(bad)), DEFAULT_MODEL, 0.5, api_name="/video")


def test_morph_without_a_face_is_a_clear_error(client, faces, tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank)
    with pytest.raises(AppError, match="No face found in photo 2"):
        client.predict(handle_file(str(faces[0].image)), handle_file(str(blank)), 4, 10, api_name="/morph")


def test_filters_and_feature_maps_endpoints(client, app_module, faces):
    grid = iio.imread(client.predict("face68_accurate", api_name="/filters"))
    expected = app_module.filters_api("face68_accurate")
    assert grid.shape[:2] == expected.shape[:2] and grid.std() > 5
    nose = iio.imread(client.predict("nose", api_name="/filters"))
    assert nose.shape != grid.shape                       # another model, other filters
    maps = iio.imread(client.predict(handle_file(str(faces[0].image)), "face68_accurate", api_name="/feature_maps"))
    assert maps.ndim == 3 and maps.shape[0] > 100


@pytest.mark.parametrize("model", ["nose", "imm58", "face68_baseline"])
def test_feature_maps_crop_holds_the_face_for_every_layout(app_module, faces, model):
    """The nose model has one point and so no landmark box: its crop must be its box's, not a few
    pixels around the nose tip blown up."""
    lm = app_module.get_landmarker(model)
    rgb = app_module.load_image(str(faces[0].image))
    face = max(lm.predict(rgb, flip_test=False, small_faces=False), key=lambda f: (f.confidence, f.score))
    crop, _ = app_module.feature_maps_ui(str(faces[0].image), model)
    by_box = app_module.viz.input_picture(lm.model_inputs(rgb, [face.box])[1][0])
    detail = np.abs(np.diff(crop[::2, ::2].astype(np.float32), axis=1)).mean()   # shown 2×; a blown-up patch is smooth
    assert detail > 0.5 * np.abs(np.diff(by_box.astype(np.float32), axis=1)).mean(), detail


def test_feature_maps_show_a_turned_face_as_the_model_sees_it(app_module, faces, tmp_path):
    """The model input of a photo turned 90° was the detector's crop, sideways and cut; it is now the
    levelled crop the model reads, so nearly the upright photo's."""
    im = Image.open(faces[0].image).convert("RGB")
    upright, turned = tmp_path / "upright.png", tmp_path / "turned.png"
    im.save(upright)
    im.transpose(Image.Transpose.ROTATE_90).save(turned)
    crop_up, maps_up = app_module.feature_maps_ui(str(upright), DEFAULT_MODEL)
    crop_turned, maps_turned = app_module.feature_maps_ui(str(turned), DEFAULT_MODEL)
    w, h = app_module.get_landmarker(DEFAULT_MODEL).input_size  # the model input, shown at twice its size
    assert crop_up.shape == crop_turned.shape == (2 * h, 2 * w, 3) and maps_up.shape == maps_turned.shape
    diff = np.abs(crop_up.astype(np.float32) - crop_turned).mean()
    sideways = np.abs(crop_up.astype(np.float32) - np.rot90(crop_turned)).mean()
    assert diff < 20 and diff < sideways / 2, (diff, sideways)


# -----------------------------------------------------------------------------------------------
# in-process: what the UI gets, state, errors

def test_ui_downloads_are_per_request_and_correct(app_module, faces):
    from fkd.data import read_pts
    r = faces[0]
    out1 = app_module.keypoints_ui(str(r.image), "auto", "face68_accurate", True, True, None)
    out2 = app_module.keypoints_ui(str(r.image), "auto", "face68_accurate", False, False, None)
    image, summary, table, files, result, _ = out1
    assert "1 face" in summary and len(table) == 68
    pts = [f for f in files if f.endswith(".pts")]
    assert len(pts) == 1
    np.testing.assert_allclose(read_pts(pts[0]), np.array(result["faces"][0]["keypoints"]), atol=0.01)
    csv = open([f for f in files if f.endswith(".csv")][0]).read().splitlines()
    assert csv[0].startswith("image,face,x0,y0,") and len(csv) == 2     # one row per face, as fkd.evaluate's
    row = csv[1].split(",")
    assert row[:2] == [r.image.name, "1"] and len(row) == 2 + 2 * 68
    np.testing.assert_allclose(np.array(row[2:], float).reshape(68, 2), result["faces"][0]["keypoints"], atol=0.006)
    assert json.load(open([f for f in files if f.endswith(".json")][0])) == result
    dirs1, dirs2 = {str(p).rsplit("/", 1)[0] for p in files}, {str(p).rsplit("/", 1)[0] for p in out2[3]}
    assert len(dirs1) == 1 and dirs1.isdisjoint(dirs2), "two requests shared a folder"
    assert not np.array_equal(image, out2[0])  # the toggles change the picture


def test_drawn_boxes_are_scaled_back_to_the_photo(app_module, faces, tmp_path):
    r = faces[0]
    im = Image.open(r.image)
    s = 3.0
    big = tmp_path / "big.png"
    im.resize((round(im.width * s), round(im.height * s)), Image.BILINEAR).save(big)
    shown = app_module.show_annotator("draw", str(big))["value"]["image"]
    assert max(shown.shape[:2]) <= app_module.ANNOTATOR_SIDE
    d = shown.shape[1] / (im.width * s)                    # photo → canvas
    lo, hi = r.points.min(0) * s, r.points.max(0) * s
    box = dict(zip(("xmin", "ymin", "xmax", "ymax"), (np.r_[lo - 40, hi + 40] * d).round()))
    _, _, _, _, result, _ = app_module.keypoints_ui(str(big), "draw", "face68_accurate", True, True,
                                                 {"image": shown, "boxes": [box]})
    check_faces(result, r.points * s + (s - 1) / 2)
    with pytest.raises(app_module.UserError, match="Draw at least one box"):
        app_module.keypoints_ui(str(big), "draw", "face68_accurate", True, True, {"image": shown, "boxes": []})


def test_missing_weights_are_a_clear_error(app_module, faces, monkeypatch):
    import gradio as gr
    monkeypatch.setitem(app_module.MODELS, "not_trained_yet", "a model without weights")
    with pytest.raises(gr.Error, match="not_trained_yet.json: model card not found") as e:
        app_module.keypoints_api(str(faces[0].image), "auto", "not_trained_yet")
    assert str(ROOT) not in str(e.value)
    summary, curves, *_ = app_module.training_ui("not_trained_yet")
    assert "not found" in summary and curves is None


def test_live_sessions_are_independent_and_smoothed(app_module, faces):
    from fkd.io import load_image
    frame = load_image(faces[0].image)
    rng = np.random.default_rng(0)
    s1 = None
    for _ in range(3):
        noisy = np.clip(frame.astype(np.int16) + rng.integers(-12, 13, frame.shape), 0, 255).astype(np.uint8)
        out, text, s1 = app_module.live_step(noisy, "face68_accurate", 0.5, s1)
    assert isinstance(s1, app_module.LiveSession) and s1.tracker.smoother.tracks and "frames/s" in text
    assert out.shape == frame.shape and not np.array_equal(out, noisy)
    # a new visitor starts from scratch: its first frame is the raw prediction, not session 1's average
    raw = app_module.get_landmarker("face68_accurate").predict(frame)[0].keypoints
    _, _, s2 = app_module.live_step(frame, "face68_accurate", 0.5, None)
    assert s2 is not s1 and len(s2.tracker.smoother.tracks) == 1
    np.testing.assert_allclose(s2.tracker.smoother.tracks[0][1].x[2:] * s2.tracker.smoother.tracks[0][2], raw, atol=1e-3)
    assert app_module.live_step(None, "face68_accurate", 0.5, None)[0] is None


def doubted_frame(lm, rgb: np.ndarray) -> np.ndarray:
    """The face defocused until the model doubts it but keeps it (min_confidence <= confidence <
    search_below): the least blur that does, whatever the model's scores."""
    for sigma in np.arange(1.0, 20.0, 0.5):
        frame = cv2.GaussianBlur(rgb, (0, 0), sigma)
        found = lm.predict(frame, search=False)
        if len(found) == 1 and lm.min_confidence <= found[0].confidence < lm.settings.search_below:
            return frame
    pytest.fail("no blur makes the model doubt the face and keep it")


def test_the_webcam_paces_the_search_of_turned_copies(app_module, faces, monkeypatch):
    """A face the model doubts (here a defocused one) or an empty view would start the search of
    turned copies on every frame (101 against 13 ms per frame on one AVX2 core); the live tab runs it
    when it has no face to follow, once per second while that finds nothing new."""
    import cv2
    from fkd.geometry import turned_image
    from fkd.io import load_image
    lm = app_module.get_landmarker("face68_accurate")
    frame = doubted_frame(lm, load_image(faces[1].image))
    calls = []
    real = lm.faces_in_turned_copies
    monkeypatch.setattr(lm, "faces_in_turned_copies", lambda *a: calls.append(tuple(a[-1])) or real(*a))
    state = app_module.LiveSession()
    t = [0.0]
    state.clock = lambda: t[0]  # 10 frames per second

    def step(img):
        t[0] += 0.1
        return app_module.live_step(img, "face68_accurate", 0.5, state)[1]

    texts = [step(frame) for _ in range(4)]
    assert all("1 face(s)" in x for x in texts) and len(calls) == 1   # then followed: no search
    # the head turns upside down (135°: lying at 90°, BlazeFace's eye points level its crop, and it is
    # found upright): the followed face is lost, and only the search finds the head, at its next run
    # (within a second); from then on it is followed from its points, with no search at all
    turned, _ = turned_image(load_image(faces[1].image), 135)
    texts = [step(turned) for _ in range(12)]
    found = [i for i, x in enumerate(texts) if "1 face(s)" in x]
    assert found and found[0] <= 10 and found == list(range(found[0], 12)), texts
    assert len(calls) == 2 and calls[1] == tuple(lm.settings.turns), calls  # every copy
    assert state.tracker.faces[0].turn != 0  # found in a turned copy


def test_training_tab_reads_cards_and_reports(app_module):
    summary, curves, gallery, no_gallery, points, no_points = app_module.training_ui("imm58")
    assert "NME" in summary and curves is not None and curves.ndim == 3
    assert gallery["visible"] and gallery["value"].ndim == 3 and not no_gallery["visible"]
    # the nose tip has no gallery or per-point plot: a line says so instead of an empty box
    _, _, gallery, no_gallery, points, no_points = app_module.training_ui("nose")
    assert not gallery["visible"] and "single point" in no_gallery["value"] and no_gallery["visible"]
    assert not points["visible"] and no_points["visible"]
    summary, *_ = app_module.training_ui("face68_accurate")
    assert summary.startswith("###")


def test_app_does_not_import_training_code():
    code = ("import sys; sys.path.insert(0, %r); import app; "
            "print([m for m in ('fkd.recipes', 'fkd.engine', 'fkd.transforms', 'train') if m in sys.modules])" % str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_stopping_the_server_deletes_users_photos(faces, tmp_path):
    """`python app.py` stopped by SIGTERM (kill, docker stop, a Space restart) leaves no upload or result behind."""
    cache, port = tmp_path / "gradio", free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(cache), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        c, t0 = None, time.time()
        while c is None and time.time() - t0 < 120 and server.poll() is None:
            try:
                c = Client(f"http://127.0.0.1:{port}", verbose=False, download_files=str(tmp_path / "client"))
            except Exception:
                time.sleep(1)
        assert c is not None, "the app did not start"
        _, result = c.predict(handle_file(str(faces[0].image)), "auto", "face68_accurate", api_name="/keypoints")
        assert result["faces"]
        stored = [p.name for p in cache.rglob("*") if p.is_file()]
        assert faces[0].image.name in stored and "keypoints.png" in stored
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_summary_marks_drawn_boxes_and_doubtful_faces(app_module, faces, tmp_path):
    """Drawn boxes have no detector score; a box on a plain wall gets flagged; a model without a
    confidence does not claim one."""
    r = faces[0]
    im = np.asarray(Image.open(r.image).convert("RGB"))
    h, w = im.shape[:2]
    photo = tmp_path / "face_and_wall.png"
    Image.fromarray(np.concatenate([im, np.full_like(im, 128)], 1)).save(photo)  # the face, then a grey wall
    lo, hi = r.points.min(0), r.points.max(0)
    side = min(float((hi - lo).max()), h - 2)
    on_face = dict(zip(("xmin", "ymin", "xmax", "ymax"), map(float, (*lo, *hi))))
    on_wall = {"xmin": w + 1.0, "ymin": 1.0, "xmax": w + 1.0 + side, "ymax": 1.0 + side}
    canvas = np.asarray(Image.open(photo))
    _, summary, *_ = app_module.keypoints_ui(str(photo), "draw", "face68_accurate", False, False,
                                            {"image": canvas, "boxes": [on_face, on_wall]})
    rows = [line for line in summary.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2 and all(" | drawn | " in line for line in rows), summary
    assert "⚠" not in rows[0] and rows[1].endswith(" ⚠ |"), summary
    assert "⚠ landmark confidence below 0.8: occluded, blurred or not a face?" in summary
    # drawn the other way round (the annotator gives the last drawn box first): numbered left to right
    _, again, *_ = app_module.keypoints_ui(str(photo), "draw", "face68_accurate", False, False,
                                          {"image": canvas, "boxes": [on_wall, on_face]})
    assert [line for line in again.splitlines() if line.startswith(("| 1 |", "| 2 |"))] == rows, again
    _, summary, *_ = app_module.keypoints_ui(str(photo), "draw", "face68_baseline", False, False,
                                            {"image": canvas, "boxes": [on_face]})
    assert "this model gives none" in summary and "1.00" not in summary, summary


def test_point_numbers_only_on_faces_large_enough_to_read_them(app_module, faces, tmp_path):
    """A group photo's small faces came out as yellow blots under 68 numbers each: they get none,
    and the summary says so; a large face keeps its numbers."""
    r = faces[0]
    im = Image.open(r.image).convert("RGB")
    big = tmp_path / "big.png"
    im.resize((im.width * 3, im.height * 3), Image.BILINEAR).save(big)  # the face ~3× larger than its crop
    group = tmp_path / "group.png"
    canvas = Image.new("RGB", (1280, 960), (90, 90, 90))
    canvas.paste(im.resize((im.width // 3, im.height // 3), Image.BILINEAR), (600, 500))  # a small face
    canvas.save(group)
    plain, *_ = app_module.keypoints_ui(str(big), "auto", "face68_accurate", False, True)
    numbered, summary, *_ = app_module.keypoints_ui(str(big), "auto", "face68_accurate", True, True)
    assert "left out" not in summary and not np.array_equal(plain, numbered)
    plain, *_ = app_module.keypoints_ui(str(group), "auto", "face68_accurate", False, True)
    numbered, summary, table, *_ = app_module.keypoints_ui(str(group), "auto", "face68_accurate", True, True)
    assert "**1 face**" in summary and "Point numbers are left out on the face:" in summary, summary
    assert np.array_equal(plain, numbered) and len(table) == 68


def test_a_crowd_lists_its_first_faces_and_says_where_the_others_are(app_module, faces):
    """77 rows under the photo pushed everything below them off the screen."""
    r = faces[0]
    face = Face(box=np.r_[r.points.min(0), r.points.max(0)].astype(np.float32), score=0.9,
                keypoints=r.points.astype(np.float32), confidence=0.99)
    crowd = [replace(face, box=face.box + k, keypoints=face.keypoints + k) for k in range(20)]
    crowd[15] = replace(crowd[15], confidence=0.5)
    summary = app_module.faces_summary(crowd, "face68_accurate")
    rows = [line for line in summary.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert "**20 faces**" in summary and len(rows) == app_module.SUMMARY_ROWS
    assert f"Faces {app_module.SUMMARY_ROWS + 1}-20 are in the points table" in summary
    assert "⚠ 1 of them below 0.8" in summary
    assert "Faces" not in app_module.faces_summary(crowd[:5], "face68_accurate")


def test_each_face_is_numbered_on_the_picture_as_in_the_table(app_module, faces, monkeypatch):
    """With several faces, the table's numbers were nowhere on the picture: each box gets its number
    by its top-left corner (one face gets none)."""
    from fkd import viz
    r = faces[0]
    rgb = np.asarray(Image.open(r.image).convert("RGB"))
    lo, hi = r.points.min(0), r.points.max(0)
    one = Face(box=np.r_[lo, hi].astype(np.float32), score=0.9, keypoints=r.points.astype(np.float32), confidence=0.99)
    two = Face(box=one.box + 30, score=0.8, keypoints=one.keypoints + 30, confidence=0.98)
    calls = []
    monkeypatch.setattr(viz, "label", lambda image, text, corner, size, color: calls.append((text, tuple(corner))))
    viz.annotate_photo(rgb, [one], rgb.shape[1])
    assert calls == []
    viz.annotate_photo(rgb, [one, two], rgb.shape[1])
    assert [t for t, _ in calls] == ["1", "2"]
    assert np.allclose(calls[0][1], one.box[:2], atol=0.5) and np.allclose(calls[1][1], two.box[:2], atol=0.5)
    monkeypatch.undo()
    canvas = np.zeros((100, 100, 3), np.uint8)  # at the top edge the label goes inside, not off the picture
    viz.label(canvas, "7", (10, 0), 1.0, (230, 25, 75))
    assert canvas[:40].any()


def test_small_photos_are_drawn_enlarged_in_the_ui(app_module, faces):
    """A 60-px crop came back as a 60-px stamp in a 480-px box; the points still land on the face."""
    r = faces[0]
    w, h = Image.open(r.image).size
    assert max(w, h) < app_module.DISPLAY_MIN_SIDE
    drawing, _, _, _, result, _ = app_module.keypoints_ui(str(r.image), "auto", "face68_accurate", False, False)
    k = app_module.DISPLAY_MIN_SIDE / max(w, h)
    assert max(drawing.shape[:2]) == app_module.DISPLAY_MIN_SIDE
    assert abs(drawing.shape[1] - w * k) <= 1 and abs(drawing.shape[0] - h * k) <= 1
    assert (result["width"], result["height"]) == (w, h)  # the JSON stays in the photo's pixels
    x, y = np.round((np.asarray(result["faces"][0]["keypoints"][30]) + 0.5) * drawing.shape[1] / w - 0.5).astype(int)
    assert (drawing[y - 1:y + 2, x - 1:x + 2] == [0, 255, 0]).all(axis=-1).any()  # the nose tip's dot is there


def test_draw_mode_without_a_photo_asks_for_the_photo(app_module):
    import gradio as gr
    with pytest.raises(gr.Error, match="Add a photo first"):
        app_module.keypoints_ui(None, "draw", "face68_accurate", True, True, None)


def test_small_photos_get_a_canvas_to_draw_on(app_module, faces, tmp_path):
    """A photo smaller than the canvas is scaled up on it, and a box drawn there comes back in the
    photo's own pixels."""
    small = tmp_path / "small.png"
    Image.open(faces[0].image).convert("RGB").resize((90, 120)).save(small)
    canvas = app_module.show_annotator("draw", str(small))["value"]["image"]
    assert canvas.shape[0] == app_module.ANNOTATOR_HEIGHT and canvas.shape[1] / canvas.shape[0] == 0.75
    k = canvas.shape[1] / 90
    box = {"xmin": 10 * k, "ymin": 20 * k, "xmax": 80 * k, "ymax": 100 * k}
    *_, result, _ = app_module.keypoints_ui(str(small), "draw", "face68_accurate", False, False, {"image": canvas, "boxes": [box]})
    assert np.allclose(result["faces"][0]["box"], [10, 20, 80, 100], atol=0.01)


def test_filters_text_says_how_much_is_shown(app_module):
    assert "all shown" in app_module.filters_ui("imm58")[2]                     # 16 × 16 kernels: all of them
    assert "the first 16 × 12 of 20 × 12 shown" in app_module.filters_ui("nose")[2]
    assert "the first 16 × 16 of 32 × 32 shown" in app_module.filters_ui("face68_baseline")[2]  # a square part


# -----------------------------------------------------------------------------------------------
# what a new user ran into (issue 30)

def test_checkboxes_redraw_the_last_result_without_the_model(app_module, faces, monkeypatch):
    path = str(faces[0].image)
    plain, _, _, _, _, last = app_module.keypoints_ui(path, "auto", "face68_accurate", False, True)
    numbered = app_module.keypoints_ui(path, "auto", "face68_accurate", True, False)[0]
    lm = app_module.get_landmarker("face68_accurate")
    monkeypatch.setattr(lm, "predict", lambda *a, **k: pytest.fail("a checkbox ran the model"))
    drawing, summary = app_module.redraw_ui(last, True, False)
    assert np.array_equal(drawing, numbered) and "1 face" in summary and not np.array_equal(drawing, plain)
    assert np.array_equal(app_module.redraw_ui(last, False, True)[0], plain)
    import gradio as gr
    assert all(isinstance(x, type(gr.skip())) for x in app_module.redraw_ui(None, True, True))  # nothing on show yet
    # the events: the checkboxes redraw from the session's last result, the model runs again
    events = {(app_module.demo.blocks[t[0]].elem_id, t[1], f.fn.__name__) for f in app_module.demo.fns.values()
              for t in f.targets if t[0] in app_module.demo.blocks}
    assert {("kp-numbers", "change", "redraw_ui"), ("kp-contours", "change", "redraw_ui")} <= events


def test_changing_the_model_runs_it_again_on_the_photo_on_show(app_module, faces):
    path = str(faces[0].image)
    *_, result, last = app_module.keypoints_ui(path, "auto", "face68_accurate", False, True)
    *_, again, now = app_module.rerun_ui(last, path, "auto", "imm58", False, True, None)
    assert now.model == "imm58" and again["model"] == "imm58" and len(again["faces"][0]["keypoints"]) == 58
    import gradio as gr
    skip = type(gr.skip())
    assert all(isinstance(x, skip) for x in app_module.rerun_ui(None, path, "auto", "imm58", False, True))  # not run yet
    assert all(isinstance(x, skip) for x in app_module.rerun_ui(last, path, "auto", "face68_accurate", False, True))


def test_point_numbers_are_off_by_default(app_module):
    numbers = [b for b in app_module.demo.blocks.values() if getattr(b, "elem_id", None) == "kp-numbers"]
    assert len(numbers) == 1 and numbers[0].value is False   # the examples take the checkboxes' values


def test_model_labels_are_short_and_described_apart(app_module):
    """'300-W 68 points, distilled (Part 3; the most accurate) · default here' was cut in the webcam row."""
    for label, m in app_module.model_choices():
        assert label.startswith(m) and len(label) <= len(m) + len(" (default)")
        assert app_module.model_info(m) == app_module.MODELS[m]


def test_morph_without_a_face_says_what_to_do_in_one_message(app_module, faces, tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank)
    *outputs, status = app_module.morph_ui(str(blank), str(faces[0].image), 4, 10, False)
    assert outputs == [None] * 4                                  # no error badge on each output
    assert "No face found in photo 1" in status and "looks into the camera" in status


def test_filters_are_on_one_scale_and_noise_is_called_noise(app_module):
    from fkd import viz
    w = np.zeros((4, 3, 5, 5), np.float32)
    w[1] = 1.0                               # a strong filter, a weak one, and zero ones
    w[2] = 0.2
    grid = viz.kernel_grid(w, cell=10)
    tile = lambda k: grid[2 + (k // 2) * 12: 12 + (k // 2) * 12, 2 + (k % 2) * 12: 12 + (k % 2) * 12]  # noqa: E731
    assert np.all(np.abs(tile(0).astype(int) - 128) <= 1)          # 0 is mid-grey, not stretched to noise
    assert tile(1).min() == 255 and 128 < tile(2).mean() < 180     # the weak filter is faint
    square = viz.kernel_grid(np.random.default_rng(0).normal(size=(32, 32, 3, 3)), cell=20)
    assert square.shape[0] == square.shape[1]                      # 16 × 16, not a 32 × 16 strip
    rng = np.random.default_rng(1)
    assert abs(viz.neighbour_correlation(rng.normal(size=(32, 3, 7, 7)))) < 0.1
    yy, xx = np.mgrid[-3:4, -3:4]
    assert viz.neighbour_correlation(np.exp(-(xx ** 2 + yy ** 2) / 8.0)[None, None]) > 0.7
    model = "face68_baseline"
    r = viz.neighbour_correlation(app_module.convs_of(model)[0].weight)
    text = app_module.filters_ui(model)[2]
    assert ("look like noise" in text) == (r < app_module.SMOOTH_BELOW) and "grey is 0" in text
