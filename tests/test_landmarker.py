"""The committed weights, end to end: accuracy on fixture faces, every input form, boxes."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import FIXTURES, ROOT, W300, val_faces
from PIL import Image

import fkd
from fkd.detect import Detection, FaceDetector
from fkd.geometry import landmark_box
from fkd.landmarker import crop_shift
from fkd.metrics import nme


def test_every_input_form_gives_the_same_points(landmarker, face_image, tmp_path):
    rgb, gt = face_image
    ref = landmarker.predict(rgb)[0].keypoints
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    Image.fromarray(rgb).save(tmp_path / "a.png")
    for src in (Image.fromarray(rgb), rgba, tmp_path / "a.png", str(tmp_path / "a.png"),
                (tmp_path / "a.png").read_bytes()):
        got = landmarker.predict(src)
        assert len(got) == 1
        assert np.abs(got[0].keypoints - ref).max() < 1.0
    g = landmarker.predict(gray)  # grayscale: a different image, but still the same face
    assert len(g) == 1 and nme(g[0].keypoints[None], gt[None])[0] < 0.1


def test_exif_rotated_photo_gives_points_in_the_upright_image(landmarker, face_image, tmp_path):
    rgb, gt = face_image
    # store the image rotated, with an EXIF tag saying "rotate 90° clockwise to view" (orientation 6)
    stored = Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    faces = landmarker.predict(tmp_path / "phone.jpg")
    assert len(faces) == 1
    assert nme(faces[0].keypoints[None], gt[None])[0] < 0.08


def test_huge_image_is_downscaled_and_points_come_back_in_full_size(landmarker, face_image):
    rgb, gt = face_image
    big = np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] * 12, rgb.shape[0] * 12), Image.BILINEAR))
    faces = landmarker.predict(big)
    assert len(faces) == 1
    assert nme(faces[0].keypoints[None], (gt[None] + 0.5) * 12 - 0.5)[0] < 0.08


def test_a_loose_hand_drawn_box_works_like_a_detector_box(landmarker, face_image):
    rgb, gt = face_image
    x0, y0, x1, y1 = landmark_box(gt)
    w, h = x1 - x0, y1 - y0
    loose = [x0 - 0.1 * w, y0 - 0.35 * h, x1 + 0.12 * w, y1 + 0.05 * h]  # forehead to chin, a bit wide
    faces = landmarker.predict(rgb, boxes=[loose])
    assert len(faces) == 1 and faces[0].score == 1.0
    assert nme(faces[0].keypoints[None], gt[None])[0] < 0.08
    reversed_corners = [loose[2], loose[3], loose[0], loose[1]]
    again = landmarker.predict(rgb, boxes=[reversed_corners])[0].keypoints
    assert np.allclose(again, faces[0].keypoints, atol=1e-3)


@pytest.mark.parametrize("box,msg", [
    ([5000, 5000, 6000, 6000], "outside"), ([10, 10, 12, 12], "too small"), ([1, 2, 3], "four numbers"),
    ([0, 0, float("nan"), 10], "non-finite"),
    (Detection(np.array([20, 20, 120, 120]), 0.9, np.zeros((5, 2))), "six finite"),    # a detection's points
    (Detection(np.array([20, 20, 120, 120]), 0.9, np.full((6, 2), np.inf)), "six finite"),
    (Detection(np.array([5000, 5000, 6000, 6000]), 0.9, None), "outside"),
    (Detection(np.array([20, 20, 20, 40]), 0.9, None), "too small")])
def test_bad_boxes_are_explained(landmarker, face_image, box, msg):
    with pytest.raises(ValueError, match=msg):
        landmarker.predict(face_image[0], boxes=[box])


def test_no_face_gives_an_empty_list(landmarker):
    rng = np.random.default_rng(0)
    assert landmarker.predict(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)) == []
    assert landmarker.predict(np.full((200, 200, 3), 128, np.uint8)) == []


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_predict_cli_writes_json_and_reports_bad_files(tmp_path):
    img = sorted(W300.rglob("*.jpg"))[0]
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0\0\0\x18ftypmp42" + b"\0" * 64)  # a video (here a stub): fkd.video's job
    out = tmp_path / "out.json"
    p = run_cli("fkd.predict", str(img), str(bad), str(tmp_path / "missing.jpg"), str(clip), "--json", str(out))
    assert p.returncode == 1, p.stderr
    res = json.loads(out.read_text())
    assert res[0]["image"] == str(img) and len(res[0]["faces"]) == 1
    assert len(res[0]["faces"][0]["keypoints"]) == 68
    assert "not an image" in res[1]["error"] and "notes.jpg" in p.stderr and "fkd.video" not in res[1]["error"]
    assert "no such file" in res[2]["error"] and "missing.jpg" in p.stderr
    assert res[3]["error"].endswith("; for a video, python -m fkd.video") and "clip.mp4" in p.stderr


def test_predict_cli_takes_a_box_and_refuses_what_it_cannot_do(capsys):
    """In-process: the same main() as `python -m fkd.predict`, without a Python start per case."""
    from fkd import predict
    img = sorted(W300.rglob("*.jpg"))[0]
    assert predict.main([str(img), "--box", "10,10,200,200", "--model", "nose"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["faces"][0]["keypoints"]) == 1
    assert predict.main([str(img), "--model", "no_such_model"]) == 2
    assert "no_such_model.json: model card not found" in capsys.readouterr().err
    assert predict.main([str(img), "--json", "/proc/no/such/dir/out.json"]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_predict_cli_finds_small_faces_unless_told_not_to(tmp_path, group_photo, landmarker, capsys):
    from fkd import predict
    canvas, expected = group_photo
    img = tmp_path / "group.png"
    Image.fromarray(canvas).save(img)
    counts = []
    for extra in (["--draw", str(tmp_path)], ["--no-small-faces"]):
        assert predict.main([str(img), *extra]) == 0
        counts.append(len(json.loads(capsys.readouterr().out)[0]["faces"]))
    # without the tiles, what the library gives without them (the faces vanish in the whole picture)
    assert counts == [len(expected), len(landmarker.predict(canvas, small_faces=False))]
    # the drawing's dots are sized to the faces: sized to the 1600-px picture, they covered 70 % of each
    drawn = np.asarray(Image.open(tmp_path / "group_keypoints.png").convert("RGB"))
    for e in expected:
        x0, y0, x1, y1 = landmark_box(e).astype(int)
        assert np.all(drawn[y0:y1, x0:x1] == [0, 255, 0], axis=2).mean() < 0.3


def test_lines_around_a_small_face_in_a_large_picture_are_thin(face_image):
    """Box lines were sized to the picture: 4 px around a 50-px face of a 1600-px photo."""
    from fkd import viz
    from fkd.landmarker import Face
    rgb, gt = face_image
    pts = (gt + 0.5) / 4 - 0.5 + [200, 300]
    box = landmark_box(pts) + [-5, -10, 5, 5]
    face = Face(box=box.astype(np.float32), score=0.9, keypoints=pts.astype(np.float32), confidence=0.99)
    canvas = np.full((1200, 1600, 3), 90, np.uint8)
    boxed = viz.draw_faces(canvas, [face])
    changed = np.any(boxed != viz.draw_faces(canvas, [face], boxes=False), axis=2).sum()
    assert changed < 4.5 * 2 * ((box[2] - box[0]) + (box[3] - box[1]))  # ~1 px lines (antialiased): ~3×


def test_predict_cli_checks_its_outputs_before_the_work(tmp_path, capsys):
    from fkd import predict
    img = tmp_path / "photo.jpg"
    img.write_bytes(sorted(W300.rglob("*.jpg"))[0].read_bytes())
    before = img.read_bytes()
    assert predict.main([str(img), "--json", str(img)]) == 2
    assert "would overwrite an input" in capsys.readouterr().err and img.read_bytes() == before
    assert predict.main([str(img), "--json", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        predict.main([str(img), "--box-kind", "landmarks"])
    assert e.value.code == 2 and "--box-kind describes the boxes given with --box" in capsys.readouterr().err
    # a drawing never takes the name of an input that sits in the drawings' folder
    (tmp_path / "photo_keypoints.png").write_bytes(before)
    assert predict.main([str(img), str(tmp_path / "photo_keypoints.png"), "--draw", str(tmp_path)]) == 0
    assert (tmp_path / "photo_keypoints.png").read_bytes() == before
    assert {e["drawing"] for e in json.loads(capsys.readouterr().out)} == {str(tmp_path / "photo_keypoints_2.png"),
                                                                          str(tmp_path / "photo_keypoints_keypoints.png")}


def test_predict_cli_takes_folders_and_keeps_every_drawing(tmp_path, capsys):
    img = sorted(W300.rglob("*.jpg"))[0]
    for sub in ("a", "b/c"):  # the same file name in two folders
        (tmp_path / "in" / sub).mkdir(parents=True)
        shutil.copy(img, tmp_path / "in" / sub / "face.jpg")
    (tmp_path / "in" / "a" / "notes.txt").write_text("not an image, not picked")
    (tmp_path / "empty").mkdir()
    out, drawn = tmp_path / "out.json", tmp_path / "drawn"
    (tmp_path / "in" / "a" / "._face.jpg").write_bytes(b"macOS metadata, not a photo")  # hidden: left out
    (tmp_path / "in" / ".ipynb_checkpoints").mkdir()
    shutil.copy(img, tmp_path / "in" / ".ipynb_checkpoints" / "face.jpg")  # in a hidden folder: left out too
    from fkd import predict
    rc = predict.main([str(tmp_path / "in"), str(tmp_path / "empty"), str(tmp_path / "in" / "a" / "face.jpg"),
                       "--json", str(out), "--draw", str(drawn)])  # the last file again: done once
    err = capsys.readouterr().err
    assert rc == 1, err  # the empty folder
    res = json.loads(out.read_text())
    assert [r["image"] for r in res] == [str(tmp_path / "in" / "a" / "face.jpg"), str(tmp_path / "in" / "b" / "c" / "face.jpg"),
                                         str(tmp_path / "empty")]
    assert [len(r["faces"][0]["keypoints"]) for r in res[:2]] == [68, 68]
    assert "no images in this folder" in res[2]["error"] and "empty" in err
    assert sorted(f.name for f in drawn.iterdir()) == ["face_keypoints.png", "face_keypoints_2.png"]
    assert [r["drawing"] for r in res[:2]] == [str(drawn / "face_keypoints.png"), str(drawn / "face_keypoints_2.png")]


def test_evaluate_cli_scores_a_folder(tmp_path, capsys):
    from fkd import evaluate
    rc = evaluate.main([str(W300), "--box", "landmarks", "--json", str(tmp_path / "m.json"), "--ced", str(tmp_path / "ced.png"),
                        "--export-csv", str(tmp_path / "sub.csv"), "--pts", str(tmp_path / "pts")])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "m.json").read_text())
    n = len(list(W300.rglob("*.pts")))
    assert m["faces"] == n and 0 <= m["auc8_percent"] <= 100  # the scores themselves: test_accuracy.py
    assert (tmp_path / "ced.png").stat().st_size > 1000
    rows = (tmp_path / "sub.csv").read_text().splitlines()
    assert len(rows) == n + 1 and rows[0].startswith("image,face,x0,y0") and len(rows[0].split(",")) == 2 + 136
    from fkd.data import read_pts
    written = sorted(f.relative_to(tmp_path / "pts") for f in (tmp_path / "pts").rglob("*.pts"))
    assert written == sorted(f.relative_to(W300) for f in W300.rglob("*.pts"))  # the folder's own layout
    assert read_pts(tmp_path / "pts" / written[0]).shape == (68, 2)


@pytest.mark.parametrize("backend, mean_px, max_px", [("onnx", 0.001, 0.01), ("openvino", 0.1, 3.0)])
def test_fast_backends_agree_with_torch(face_image, backend, mean_px, max_px):
    rgb, gt = face_image
    # several boxes in one call: the graphs take one face at a time and must keep their order
    b = landmark_box(gt)
    boxes = [b, b + np.float32([-9, 4, -9, 4]), b * np.float32([1.02, 1.0, 1.0, 1.03])]
    results = {}
    for name in ("torch", backend):
        lm = fkd.Landmarker(backend=name)  # the default model
        assert lm.backend == name
        results[name] = lm.predict_boxes(rgb, boxes, "landmarks")
        lm.close()
    (pt, ct), (po, co) = results["torch"], results[backend]
    assert len(po) == len(co) == 3
    # OpenVINO computes in bfloat16 where the CPU has it: ~0.03 px on average, a point near a
    # cell border can move ~1 px; ONNX Runtime computes what torch does
    assert max(np.abs(a - b).mean() for a, b in zip(pt, po)) < mean_px
    assert max(np.abs(a - b).max() for a, b in zip(pt, po)) < max_px
    assert np.allclose(ct, co, atol=1e-3)
    assert np.abs(po[0] - po[1]).max() > 0.05  # the boxes differ, and so do their answers


def test_auto_backend_is_the_fastest_one_installed(monkeypatch):
    from fkd import runtime
    monkeypatch.setattr(runtime, "openvino_bf16", lambda: True)
    assert runtime.pick_backend("auto", "cpu") == "openvino"
    monkeypatch.setattr(runtime, "openvino_bf16", lambda: False)  # float32 OpenVINO is no faster
    assert runtime.pick_backend("auto", "cpu") == ("onnx" if runtime.onnx_available() else "torch")
    assert runtime.pick_backend("auto", "cuda") == "torch"
    assert runtime.pick_backend("onnx", "cpu") == "onnx"
    with pytest.raises(ValueError, match="backend must be one of"):
        runtime.pick_backend("tensorrt", "cpu")


def test_a_capped_instruction_set_runs_in_float32(face_image, tmp_path):
    """ONEDNN_MAX_CPU_ISA=AVX2 (a user's cap, or a bench playing an AVX2-only CPU): OpenVINO cannot
    compile a bfloat16 model then, so the runner asks for float32 and gives the uncapped points."""
    pytest.importorskip("openvino")
    rgb, gt = face_image
    np.save(tmp_path / "face.npy", rgb)
    box = landmark_box(gt)
    code = ("import sys, numpy as np, fkd\n"
            "lm = fkd.Landmarker(backend='openvino', threads=1)\n"
            f"f = lm.predict(np.load(sys.argv[1]), boxes=[{box.tolist()}], flip_test=False)[0]\n"
            "np.save(sys.argv[2], f.keypoints)\n")
    points = {}
    for cap in ("AVX2", ""):
        env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")}
        if cap:
            env["ONEDNN_MAX_CPU_ISA"] = cap
        out = tmp_path / f"points{cap}.npy"
        run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "face.npy"), str(out)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        points[cap] = np.load(out)
    assert 100 * nme(points["AVX2"][None], gt[None]).mean() < 6.0
    assert np.abs(points["AVX2"] - points[""]).mean() < 0.3  # px: float32 against bfloat16 at most


def test_the_default_model_is_the_fastest_within_a_hair_of_the_best():
    """One default on every machine: of the 68-point models in the lineup, the one that reads the
    fewest pixels among those within 0.05 % NME of the best card."""
    from fkd.weights import read_card
    cards = {m: read_card(m) for m in fkd.MODELS if read_card(m)["layout"] == "ibug68"}
    nme_of = {m: c["val_metrics"]["nme_mean"] for m, c in cards.items()}
    pixels = {m: c["config"]["input_w"] * c["config"]["input_h"] for m, c in cards.items()}
    close = [m for m in cards if nme_of[m] <= min(nme_of.values()) + 0.05]
    assert fkd.DEFAULT_MODEL == min(close, key=pixels.get)
    assert fkd.Landmarker().name == fkd.DEFAULT_MODEL


def test_importing_fkd_asks_nothing_of_the_hardware():
    """The default does not depend on the CPU: no import of fkd loads OpenVINO or ONNX Runtime."""
    code = ("import sys, fkd, fkd.predict, fkd.evaluate, fkd.video, fkd.stream; "
            "print(sorted(m for m in ('openvino', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_lineup_is_five_models_each_with_weights_and_teachers_apart():
    from fkd.weights import WEIGHTS_DIR, read_card
    assert len(fkd.MODELS) <= 5 and fkd.DEFAULT_MODEL in fkd.MODELS
    for m in fkd.MODELS:
        assert read_card(m)["name"] == m and (WEIGHTS_DIR / f"{m}.safetensors").exists()
    teachers = sorted(p.stem for p in (WEIGHTS_DIR / "teachers").glob("*.json"))
    assert teachers and not set(teachers) & set(fkd.MODELS)
    assert all(read_card(t)["name"] == t for t in teachers)  # a bare name finds them in teachers/


def test_flip_test_averages_two_passes(landmarker, face_image):
    rgb, gt = face_image
    plain = landmarker.predict(rgb, flip_test=False)[0].keypoints
    lm = fkd.Landmarker(landmarker.name, flip_test=True)
    both = lm.predict(rgb)[0].keypoints
    assert 0 < np.abs(both - plain).mean() < 3       # a different, nearby answer
    assert nme(both[None], gt[None])[0] < 0.08
    # the same choice made per call, either way round (the app mirrors photos, not webcam frames)
    assert np.allclose(landmarker.predict(rgb, flip_test=True)[0].keypoints, both, atol=1e-4)
    assert np.allclose(lm.predict(rgb, flip_test=False)[0].keypoints, plain, atol=1e-4)
    lm.close()


def test_auto_flip_test_mirrors_only_the_faces_the_model_doubts(landmarker, face_image, monkeypatch):
    rgb, gt = face_image
    box = landmark_box(gt)
    side = box[2] - box[0]
    # three crops in one batch: the face, and the same box moved off it (the model doubts those)
    boxes = [box, box + np.float32([0.3, 0.2, 0.3, 0.2]) * side, box + np.float32([-0.25, 0, -0.25, 0]) * side]
    one, c_one = landmarker.predict_boxes(rgb, boxes, "landmarks", flip_test=False)
    two, _ = landmarker.predict_boxes(rgb, boxes, "landmarks", flip_test=True)
    assert len(set(np.round(c_one, 4))) == 3
    # a threshold between the confidences: the less sure crops get two passes, the others one
    monkeypatch.setattr(landmarker, "flip_below", float(np.sort(c_one)[1]) + 1e-6)
    auto, _ = landmarker.predict_boxes(rgb, boxes, "landmarks", flip_test="auto")
    doubted = np.asarray(c_one) < landmarker.flip_below
    assert doubted.sum() == 2
    for a, o, t, d in zip(auto, one, two, doubted):
        assert np.allclose(a, t if d else o, atol=1e-4) and not np.allclose(o, t, atol=1e-2)
    # the default Landmarker mirrors by "auto"; any other word is refused
    assert landmarker.flip_test == "auto"
    with pytest.raises(ValueError, match="flip_test must be"):
        landmarker.predict(rgb, flip_test="yes")


def test_the_cards_label_shift_moves_every_pass_alike(landmarker, face_image, monkeypatch):
    """The shift is added in the crop's own frame, after the mirrored pass is mirrored back: added
    inside the mirrored crop, it would cancel in the flip test's average."""
    rgb, gt = face_image
    box = landmark_box(gt)
    A = landmarker.model_inputs(rgb, [box], "landmarks")[0][0][:, :2]  # image -> input, linear part
    shift = np.float32([2.0, -1.0])
    for flip in (False, True):
        monkeypatch.setattr(landmarker, "label_shift", np.zeros(2, np.float32))
        before = landmarker.predict_boxes(rgb, [box], "landmarks", flip_test=flip)[0][0]
        monkeypatch.setattr(landmarker, "label_shift", shift)
        after = landmarker.predict_boxes(rgb, [box], "landmarks", flip_test=flip)[0][0]
        assert np.allclose(after - before, np.linalg.solve(A, shift), atol=1e-3)


def test_the_shipped_label_shift_helps_faces_never_trained_on(landmarker, monkeypatch):
    """300-W's labels sit ~0.5 input pixels right of where a model trained with mirrored faces puts
    them; the card's shift, measured on the training faces, brings the fixture validation faces closer."""
    from fkd.weights import read_card
    shipped = landmarker.label_shift.copy()
    assert landmarker.layout.name == "ibug68" and read_card(landmarker.name)["label_shift"][0] > 0.3
    faces = [(fkd.load_image(r.image), r.points) for r in val_faces()]

    def mean_nme() -> float:
        return float(np.mean([nme(landmarker.predict_boxes(rgb, [landmark_box(gt)], "landmarks", flip_test=False)
                                  [0][0][None], gt[None])[0] for rgb, gt in faces]))
    with_shift = mean_nme()
    monkeypatch.setattr(landmarker, "label_shift", np.zeros(2, np.float32))
    without = mean_nme()
    assert np.allclose(shipped, read_card(landmarker.name)["label_shift"]) and with_shift < without


def test_cli_flip_test_words(capsys):
    from fkd.evaluate import get_args_parser
    parse = get_args_parser().parse_args
    assert parse(["d"]).flip_test == "auto"
    assert parse(["d", "--flip-test"]).flip_test == "on"
    assert parse(["d", "--flip-test", "off"]).flip_test == "off"
    with pytest.raises(SystemExit) as e:
        parse(["d", "--flip-test", "sometimes"])
    assert e.value.code == 2 and "argument --flip-test: invalid choice: 'sometimes'" in capsys.readouterr().err


def test_detections_the_landmark_model_does_not_believe_are_dropped(face_image):
    """A detector also fires on things that are no face (an ear, a pattern): here a box on a grey wall
    beside the face. The model doubts it below Settings.min_confidence and it is dropped; a box the
    user drew, or a call that asks for every detection (fkd.evaluate), keeps it."""
    rgb, gt = face_image
    photo = np.concatenate([rgb, np.full_like(rgb, 128)], 1)  # the face, then a grey wall
    face_box = landmark_box(gt)
    wall_box = face_box + np.float32([rgb.shape[1], 0, rgb.shape[1], 0])
    found = [(face_box, 0.9), (wall_box, 0.6)]
    lm = fkd.Landmarker(detector=FixedDetector(found), settings=fkd.Settings(min_confidence=0.0))
    every = {tuple(f.box): f for f in lm.predict(photo, search=False)}
    assert set(every) == {tuple(face_box), tuple(wall_box)}
    assert every[tuple(wall_box)].confidence < fkd.Settings().min_confidence <= every[tuple(face_box)].confidence
    lm = fkd.Landmarker(detector=FixedDetector(found))  # the default settings
    assert [f.box.tolist() for f in lm.predict(photo, search=False)] == [face_box.tolist()]
    assert len(lm.predict(photo, boxes=[wall_box])) == 1  # a box the user drew is never dropped
    assert len(lm.predict(photo, search=False, min_confidence=0.0)) == 2  # per call, as fkd.evaluate asks


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_fast_backends_serve_threads_at_once(backend):
    # the app's users share one Landmarker: calls from several threads at once must each get
    # their own answer (one shared OpenVINO request fails with "Infer Request is busy")
    from concurrent.futures import ThreadPoolExecutor
    lm = fkd.Landmarker(backend=backend)
    rng = np.random.default_rng(0)
    xs = [rng.random((1, 3, lm.cfg.input_h, lm.cfg.input_w), dtype=np.float32) - 0.5 for _ in range(6)]
    alone = [lm.run(x)[0] for x in xs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda i: lm.run(xs[i % 6])[0], range(36)))
    assert all(np.array_equal(p, alone[i % 6]) for i, p in enumerate(together))
    assert not np.array_equal(alone[0], alone[1])
    lm.close()


def tilted_errors(lm, degrees: float, drawn_box: bool = False) -> list[float]:
    """NME of the found face nearest each fixture face, in the image turned by `degrees` (inf: none).
    drawn_box: no detector; the box a person would draw around the turned face (its points' outline)."""
    from fkd.geometry import apply_affine, turned_image
    out = []
    for r in val_faces():
        img, A = turned_image(fkd.load_image(r.image), degrees)
        gt = apply_affine(A, r.points)
        faces = lm.predict(img, boxes=[landmark_box(gt)] if drawn_box else None)
        best = min(faces, key=lambda f: np.abs(f.keypoints - gt).mean(), default=None)
        out.append(np.inf if best is None else nme(best.keypoints[None], gt[None])[0])
    return out


def test_a_loose_box_drawn_by_hand_gets_a_second_pass_on_the_crop_of_its_points(two_pass, one_pass):
    """Boxes a person draws are looser and off-centre next to the detector's, which the training crops
    were calibrated to: the first pass is off, a second on the crop of its points is not."""
    errors = {}
    for name, lm in (("recrop", two_pass), ("one pass", one_pass)):
        errors[name] = []
        for r, (s, dx, dy) in zip(val_faces(), [(1.5, 0.1, -0.1), (1.6, -0.12, 0.08), (1.45, 0.12, 0.12)] * 4):
            b = landmark_box(r.points)
            c, side = (b[:2] + b[2:]) / 2 + np.array([dx, dy]) * (b[2] - b[0]), s * (b[2:] - b[:2]).max()
            face = lm.predict(r.image, boxes=[np.r_[c - side / 2, c + side / 2]], flip_test=False)[0]
            errors[name].append(nme(face.keypoints[None], r.points[None])[0])
    assert np.mean(errors["recrop"]) < 0.85 * np.mean(errors["one pass"]), errors
    assert np.mean(errors["recrop"]) < 0.045, errors


@pytest.fixture(scope="module")
def two_pass(landmarker):
    """The default model on the boxes' own crops (no locator), re-cropped where its points lie off them."""
    lm = fkd.Landmarker(landmarker.name, settings=fkd.Settings(locate=False))
    yield lm
    lm.close()


@pytest.fixture(scope="module")
def one_pass(landmarker):
    """The default model on the boxes' own crops, without the re-crop of boxes off the training crop."""
    lm = fkd.Landmarker(landmarker.name, settings=fkd.Settings(locate=False, recrop_above=None))
    yield lm
    lm.close()


@pytest.mark.parametrize("off,blended", [((6.0, 4.0), True), ((40.0, -30.0), False)])
def test_a_face_re_cropped_near_its_crop_gets_the_mean_of_its_two_passes(landmarker, face_image, off, blended):
    """A face whose points lie off the crop they were read on is read again on their crop. Where the
    two crops lie within `blend_within`, it keeps the mean of both readings; farther off, the first
    reading was poor and only the second counts. A followed face's first reading lags its motion: it
    never counts, and its own threshold (`follow_recrop_above`) says when it is read again."""
    rgb, gt = face_image
    moved = gt + off  # where a box or the last frame put the face: off by a little or by a lot
    settle_only = fkd.Landmarker(landmarker.name, flip_test=False,
                                 settings=fkd.Settings(recrop_above=0.0, follow_recrop_above=None, extra_passes=1))
    follow_only = fkd.Landmarker(landmarker.name, flip_test=False,
                                 settings=fkd.Settings(recrop_above=None, follow_recrop_above=0.0, extra_passes=1))
    first = settle_only.read(rgb, settle_only.crop_of(moved)[None])
    crop = settle_only.crop_of(first.points[0])
    assert (crop_shift(first.mats[0], crop, settle_only.input_size) <= settle_only.settings.blend_within) == blended
    second = settle_only.read(rgb, crop[None])
    assert not np.allclose(first.points[0], second.points[0], atol=0.1)  # the two readings differ
    face = fkd.Face(landmark_box(moved), 1.0, moved, 1.0)
    for lm, settled, followed in ((settle_only, (first.points[0] + second.points[0]) / 2 if blended else second.points[0],
                                   first.points[0]),
                                  (follow_only, first.points[0], second.points[0])):
        got = lm.settle(rgb, first)
        np.testing.assert_allclose(got.points[0], settled, atol=1e-3)
        np.testing.assert_allclose(lm.track(rgb, [face])[0].keypoints, followed, atol=1e-3)
    assert settle_only.settle(rgb, first).conf[0] == pytest.approx(second.conf[0], abs=1e-6)  # the last pass's
    settle_only.close()
    follow_only.close()


def test_the_second_pass_skips_crops_the_caller_will_drop(two_pass, one_pass):
    """A detection the model does not believe is dropped: a second pass on it would be wasted time."""
    r = val_faces()[0]
    rgb = fkd.load_image(r.image)
    b = landmark_box(r.points)
    loose = [np.r_[b[:2] - 0.3 * (b[2:] - b[:2]), b[2:] + 0.1 * (b[2:] - b[:2])]]
    refined, _ = two_pass.predict_boxes(rgb, loose, "face", flip_test=False)
    one, _ = one_pass.predict_boxes(rgb, loose, "face", flip_test=False)
    dropped, _ = two_pass.predict_boxes(rgb, loose, "face", flip_test=False, min_confidence=1.01)
    assert not np.allclose(refined[0], one[0], atol=0.5)      # the loose box got its second pass
    np.testing.assert_allclose(dropped[0], one[0], atol=1e-4)  # not when the caller drops the face


@pytest.mark.parametrize("degrees", [40, -90, 180])
def test_tilted_and_upside_down_heads_are_found_and_levelled(landmarker, degrees):
    """The model trained on faces within ±25° of their own tilt; a turned head gets a levelled
    second pass, or is found in a turned copy of the image, and comes out about as well as upright."""
    upright = tilted_errors(landmarker, 0)
    tilted = tilted_errors(landmarker, degrees)
    assert max(tilted) < 0.08, tilted
    assert np.mean(tilted) < np.mean(upright) + 0.005, (tilted, upright)


def test_auto_flip_threshold_comes_from_each_models_card():
    from fkd.landmarker import FLIP_BELOW
    from fkd.weights import read_card
    for name in ("ibug68", "face68_accurate"):
        lm = fkd.Landmarker(name, backend="torch")
        assert lm.flip_below == read_card(name)["flip_below"] != FLIP_BELOW
        lm.close()


def test_the_flip_test_skips_crops_the_caller_will_drop(one_pass, face_image):
    """A detection the model does not believe is dropped anyway: mirroring it is wasted time."""
    rgb, gt = face_image  # one pass each (the second pass skips them too: above)
    box = [landmark_box(gt)]
    one, c = one_pass.predict_boxes(rgb, box, "face", flip_test=False)
    two, _ = one_pass.predict_boxes(rgb, box, "face", flip_test=True)
    kept_only, _ = one_pass.predict_boxes(rgb, box, "face", flip_test=True, min_confidence=c[0] + 1e-3)
    assert not np.allclose(one[0], two[0], atol=1e-2)
    np.testing.assert_allclose(kept_only[0], one[0], atol=1e-4)


def test_turned_copies_are_searched_while_no_face_scores_search_below():
    """This photo turned 180°: the upright pass gives an answer at some confidence c (today's model
    reads the face upside down, NME > 100 %, at 0.95). A trigger above c searches the turned copies and
    finds the head the right way up; a trigger at c (as 0.95 was) keeps the upright answer."""
    from fkd.data import read_pts
    from fkd.geometry import apply_affine, turned_image
    path = FIXTURES / "helen_2010631499_1.jpg"  # from 300-W helen/trainset, a validation face
    img, A = turned_image(fkd.load_image(path), 180)
    gt = apply_affine(A, read_pts(path.with_suffix(".pts")))
    first = fkd.Landmarker(backend="torch")  # float32 everywhere: the same scores in each Landmarker
    upright = first.predict(img, search=False)
    first.close()
    c = max((f.confidence for f in upright), default=0.0)
    eager = fkd.Landmarker(backend="torch", settings=fkd.Settings(search_below=c + 1e-4))
    lazy = fkd.Landmarker(backend="torch", settings=fkd.Settings(search_below=c, rolled_above=180.0))
    try:
        assert min(nme(f.keypoints[None], gt[None])[0] for f in eager.predict(img)) < 0.08
        kept = lazy.predict(img)
        assert [f.keypoints.tolist() for f in kept] == [f.keypoints.tolist() for f in upright]
    finally:
        eager.close()
        lazy.close()


class TurnedCopiesOnly(FaceDetector):
    """MediaPipe blind to the picture as given: it finds faces only in the turned copies (`detect_near`),
    as BlazeFace misses most heads lying at 90°."""

    def __init__(self):
        from fkd.detect import make_detector
        self.real = make_detector("mediapipe")

    def detect(self, rgb):
        return []

    def detect_near(self, rgb):
        return self.real.detect_near(rgb)

    def close(self):
        self.real.close()


def test_faces_found_only_in_a_turned_copy_say_so_and_search_false_skips_them():
    from fkd.geometry import apply_affine, turned_image
    r = val_faces()[0]
    img, A = turned_image(fkd.load_image(r.image), 90)
    gt = apply_affine(A, r.points)
    lm = fkd.Landmarker(detector=TurnedCopiesOnly())
    try:
        found = lm.predict(img)
        best = min(found, key=lambda f: np.abs(f.keypoints - gt).mean())
        assert best.turn in lm.settings.turns and nme(best.keypoints[None], gt[None])[0] < 0.08
        assert best.to_dict()["turn"] == best.turn
        assert lm.predict(img, search=False) == [] and lm.predict(img, turns=[]) == []
    finally:
        lm.close()


def test_a_photo_turned_90_degrees_gives_all_its_faces(landmarker):
    """breakingbad.jpg turned a quarter (a phone photo without its EXIF tag): two heads lying at 64° and
    95° (today the upright detector sees only the first; the other shows in a turned copy)."""
    import cv2
    rgb = fkd.load_image(ROOT / "examples" / "breakingbad.jpg")
    upright = landmarker.predict(rgb)
    assert len(upright) == 2
    turned = cv2.rotate(rgb, cv2.ROTATE_90_CLOCKWISE)
    faces = landmarker.predict(turned)
    assert len(faces) == 2
    # the same faces as upright, turned with the photo: (x, y) -> (h - 1 - y, x)
    h = rgb.shape[0]
    for f in upright:
        moved = np.stack([h - 1 - f.keypoints[:, 1], f.keypoints[:, 0]], 1)
        assert min(nme(g.keypoints[None], moved[None])[0] for g in faces) < 0.05


def test_a_box_drawn_around_a_tilted_head_gets_the_levelled_pass(landmarker):
    upright = tilted_errors(landmarker, 0, drawn_box=True)
    tilted = tilted_errors(landmarker, -40, drawn_box=True)
    assert np.mean(tilted) < np.mean(upright) + 0.005, (tilted, upright)


def test_without_levelling_tilted_heads_go_wrong(face_image):
    """What the tests above guard against: the same faces with `upright=False`."""
    lm = fkd.Landmarker(upright=False)
    assert np.mean(tilted_errors(lm, 40)) > np.mean(tilted_errors(lm, 0)) + 0.005
    assert np.mean(tilted_errors(lm, -40, drawn_box=True)) > np.mean(tilted_errors(lm, 0, drawn_box=True)) + 0.005
    assert min(tilted_errors(lm, -90)) > 0.08  # missed, or points far off
    lm.close()


class FixedDetector(FaceDetector):
    """A detector that returns given boxes: what the Landmarker does with them, without MediaPipe."""

    def __init__(self, found):
        self.found = found

    def detect(self, rgb):
        return list(self.found)


def test_a_detector_of_ones_own_may_give_box_and_score_pairs(face_image):
    """A detector that gives (box, score) pairs, not `Detection`s: its boxes are read on every path, the
    search of turned copies too (on a blank wall no face is sure, so the copies are searched)."""
    rgb, gt = face_image
    lm = fkd.Landmarker("face68", detector=FixedDetector([(landmark_box(gt), 0.9)]))
    (face,) = lm.predict(rgb, flip_test=False)
    assert face.score == 0.9 and nme(face.keypoints[None], gt[None])[0] < 0.05
    searched = []
    real = lm.faces_in_turned_copies
    lm.faces_in_turned_copies = lambda *a: searched.append(a[-1]) or real(*a)
    assert lm.predict(np.full_like(rgb, 128), turns=(90.0,)) == [] and searched == [(90.0,)]
    lm.close()


def test_weak_detections_need_a_model_that_can_doubt_them(face_image):
    """The full-range detector reports boxes down to 0.3; a model without a confidence cannot drop
    the false ones, so it only gets boxes at the detector's own threshold (0.5)."""
    rgb, gt = face_image
    face = landmark_box(gt)
    found = [(face, 0.9), (face + [40, 0, 40, 0], 0.35)]
    for name, kept in (("face68_baseline", [0.9]), ("face68_accurate", [0.9, 0.35])):
        lm = fkd.Landmarker(name, detector=FixedDetector(found))
        assert [d.score for d in lm.detect(rgb)] == kept


def test_one_face_found_twice_is_given_once(face_image):
    """Two detector boxes on one face (the two BlazeFace models, boxes that overlap too little for
    the detector to merge them) give one face, the surer one."""
    rgb, gt = face_image
    box = landmark_box(gt)
    lm = fkd.Landmarker(detector=FixedDetector([(box, 0.9), (box * [0.97, 0.95, 1.03, 1.05], 0.6)]))
    faces = lm.predict(rgb, search=False)
    assert len(faces) == 1 and nme(faces[0].keypoints[None], gt[None])[0] < 0.1


@pytest.mark.parametrize("model", ["face68_baseline", "nose"])
def test_a_model_without_a_confidence_keeps_the_surer_box_of_one_face(face_image, model):
    """Its faces all say 1.0, so two boxes on one face kept the leftmost (a loose full-range box over
    a short-range one); the nose, one point, never counted two boxes as one face."""
    rgb, gt = face_image
    box = landmark_box(gt)
    loose = box * [0.9, 0.9, 1.02, 1.02]  # starts further left
    lm = fkd.Landmarker(model, detector=FixedDetector([(loose, 0.55), (box, 0.9)]))
    faces = lm.predict(rgb, search=False)
    assert len(faces) == 1 and faces[0].score == 0.9


def test_morph_takes_the_largest_face_by_its_points(app_module_lm, monkeypatch):
    """A full-range detector box can be twice its face: the largest face is judged by its points."""
    app, rgb, gt = app_module_lm
    small_points_big_box = fkd.Face(box=np.array([0, 0, 400, 400], np.float32), score=0.5,
                                    keypoints=(gt * 0.5).astype(np.float32), confidence=0.99)
    big = fkd.Face(box=landmark_box(gt), score=0.9, keypoints=gt.astype(np.float32), confidence=0.99)
    monkeypatch.setattr(app, "get_landmarker", lambda model: type("L", (), {"predict": lambda self, *a, **k: [small_points_big_box, big]})())
    monkeypatch.setattr(app.gr, "Info", lambda *a, **k: None)
    _, pts = app.largest_face("photo.jpg", "photo 1")
    assert np.array_equal(pts, big.keypoints)


@pytest.fixture
def app_module_lm(face_image, monkeypatch):
    import app
    monkeypatch.setattr(app, "load_image", lambda path: face_image[0])
    return app, face_image[0], face_image[1]


def test_faces_come_in_reading_order_rows_then_left_to_right():
    """A group photo's faces are numbered as a reader meets them: the back row first, each row left
    to right, though a face in the front row lies further left than any in the back."""
    from fkd.landmarker import reading_order

    def face(x, y, side=40.0):
        pts = np.array([[x, y], [x + side, y + side]], np.float32)  # two points span the face
        return fkd.Face(box=np.r_[pts[0], pts[1]], score=0.9, keypoints=pts, confidence=0.99)

    back_right, back_left, front_left = face(300, 52), face(120, 40), face(10, 200)
    back_middle = face(200, 56)  # lower than back_left by less than half a face: the same row
    order = reading_order([front_left, back_right, back_middle, back_left])
    assert [f.box[0] for f in order] == [120, 200, 300, 10]


def loose_box(points, scale: float, dx: float, dy: float) -> np.ndarray:
    """A square box `scale` × the landmark box's longer side, its centre moved by dx, dy box widths."""
    b = landmark_box(points)
    c, side = (b[:2] + b[2:]) / 2 + np.array([dx, dy]) * (b[2] - b[0]), scale * (b[2:] - b[:2]).max()
    return np.r_[c - side / 2, c + side / 2]


@pytest.mark.parametrize("degrees", [0, 30])
def test_the_locator_places_the_crop_so_that_a_box_takes_one_pass(degrees, request):
    """face68's card names a locator (the model at 64²): its pass on a box's crop gives the crop of its
    points, on which face68 reads the face once, as well as two of its own passes did (the first on the
    box's crop, the second on the crop of those points)."""
    from fkd.geometry import apply_affine, turned_image
    located = fkd.Landmarker("face68")
    two_pass = fkd.Landmarker("face68", settings=fkd.Settings(locate=False))
    request.addfinalizer(located.close), request.addfinalizer(two_pass.close)
    assert located.locator is not None and two_pass.locator is None
    assert located.locator.cfg.input_w < located.cfg.input_w
    errors, passes = {"located": [], "two passes": []}, {"located": 0, "two passes": 0}
    boxes = [(1.5, 0.1, -0.1), (1.2, -0.12, 0.08), (1.1, 0.0, 0.06)] * 4
    for r, (s, dx, dy) in zip(val_faces(), boxes):
        img, A = turned_image(fkd.load_image(r.image), degrees)
        gt = apply_affine(A, r.points)
        for name, lm in (("located", located), ("two passes", two_pass)):
            before = lm.passes
            face = lm.predict(img, boxes=[loose_box(gt, s, dx, dy)], flip_test=False)[0]
            passes[name] += lm.passes - before
            errors[name].append(nme(face.keypoints[None], gt[None])[0])
    n = len(errors["located"])
    assert located.locator.passes == n            # one small pass per box
    assert passes["two passes"] >= 1.75 * n       # where the box's own crop takes two
    if degrees:  # a tilted face: the locator's crop is upright as the box is, and settle levels it
        assert passes["located"] <= passes["two passes"]
    else:
        assert passes["located"] <= 1.25 * n      # mostly one of face68's
    assert np.mean(errors["located"]) < np.mean(errors["two passes"]) + 0.002, errors


@pytest.mark.parametrize("degrees", [0, 30])
def test_the_detectors_face_points_place_the_crop_without_the_locator(degrees, request):
    """MediaPipe's six face points place the crop of its box (turned level by its eye line when the head
    is tilted): the fixture faces, upright and turned, take no pass of the locator, no more of face68
    than through the locator (Settings(marks=False)), and read as well."""
    from fkd.evaluate import nearest_face
    from fkd.geometry import apply_affine, eye_roll, turned_image
    marked = fkd.Landmarker("face68")
    located = fkd.Landmarker("face68", settings=fkd.Settings(marks=False))
    request.addfinalizer(marked.close), request.addfinalizer(located.close)
    assert marked.mark_calibration is not None and located.mark_calibration is None
    errors, passes, tilts = {"marked": [], "located": []}, {"marked": 0, "located": 0}, []
    for r in val_faces():
        img, A = turned_image(fkd.load_image(r.image), degrees)
        gt = apply_affine(A, r.points)
        for name, lm in (("marked", marked), ("located", located)):
            before = lm.passes
            face = nearest_face(lm.predict(img, flip_test=False, small_faces=False, search=False), gt)
            passes[name] += lm.passes - before
            errors[name].append(nme(face.keypoints[None], gt[None])[0])
        found = marked.detect(img, small_faces=False)
        (tilt,) = marked.marked_crops([d.box for d in found], [d.marks for d in found])[1]
        tilts.append((tilt, eye_roll(gt, marked.layout.eyes)))
    n = len(errors["marked"])
    assert marked.locator.passes == 0 and located.locator.passes == n
    assert passes["marked"] <= passes["located"]
    assert np.mean(errors["marked"]) < np.mean(errors["located"]) + 0.002, errors
    # levelled where the labelled eyes lie tilted, by the detector's eyes (a few degrees off the labelled ones)
    assert all(abs(t - roll) < 10 if t else abs(roll) < 15 for t, roll in tilts), tilts
    assert all(t for t, _ in tilts) if degrees else not all(t for t, _ in tilts)


def test_a_head_lying_on_its_side_is_read_upright_by_the_detectors_eye_line(request):
    """BlazeFace finds a head turned 90° in the picture as it is; its eye points turn the crop level, so
    the model reads the head surely without searching turned copies (`search=False`). A crop placed by
    the locator is upright as the box is: the model doubts it, and the face is dropped or far off."""
    from fkd.evaluate import nearest_face
    from fkd.geometry import apply_affine, turned_image
    marked = fkd.Landmarker("face68")
    located = fkd.Landmarker("face68", settings=fkd.Settings(marks=False))
    request.addfinalizer(marked.close), request.addfinalizer(located.close)
    errors = {"marked": [], "located": []}
    for r in val_faces():
        img, A = turned_image(fkd.load_image(r.image), 90)
        gt = apply_affine(A, r.points)
        for name, lm in (("marked", marked), ("located", located)):
            face = nearest_face(lm.predict(img, flip_test=False, search=False, small_faces=False), gt)
            errors[name].append(1.0 if face is None else nme(face.keypoints[None], gt[None])[0])
    assert max(errors["marked"]) < 0.06, errors
    assert np.median(errors["located"]) > 0.2, errors


def test_a_face_whose_points_place_a_bad_crop_gets_the_locators(face_image):
    """Face points off the face (here moved by the box's width: a detector fooled) place a crop the model
    does not believe; the box then goes on without them, through the locator, and the face is read."""
    from fkd.detect import Detection, make_detector
    from fkd.geometry import box_side
    rgb, gt = face_image
    det = make_detector("mediapipe-short")
    (d,) = det.detect(rgb)
    det.close()
    for marks, located in ((d.marks, 0), (d.marks + [box_side(d.box), 0], 1)):
        lm = fkd.Landmarker("face68", detector=FixedDetector([Detection(d.box, d.score, marks)]))
        (face,) = lm.predict(rgb, flip_test=False, search=False)
        assert lm.locator.passes == located and nme(face.keypoints[None], gt[None])[0] < 0.05
        lm.close()


def test_predict_takes_the_detectors_own_detections_as_its_boxes(landmarker, face_image):
    """`predict(img, boxes=lm.detect(img))` (as a video loop adds newcomers): their points place the
    crops as `predict(img)` does, and each face keeps its detector score; bare boxes take the locator.
    On a huge picture (worked on downscaled) the points are scaled with the boxes."""
    rgb, gt = face_image
    found = landmarker.detect(rgb, small_faces=False)
    (auto,) = landmarker.predict(rgb, flip_test=False, small_faces=False, search=False)
    before = landmarker.locator.passes
    (given,) = landmarker.predict(rgb, boxes=found, flip_test=False)
    assert landmarker.locator.passes == before and given.score == found[0].score
    np.testing.assert_allclose(given.keypoints, auto.keypoints, atol=1e-3)
    (bare,) = landmarker.predict(rgb, boxes=[d.box for d in found], flip_test=False)
    assert landmarker.locator.passes == before + 1 and bare.score == 1.0
    big = np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] * 12, rgb.shape[0] * 12), Image.BILINEAR))
    found = landmarker.detect(big, small_faces=False)
    (face,) = landmarker.predict(big, boxes=found, flip_test=False)
    assert landmarker.locator.passes == before + 1
    assert nme(face.keypoints[None], (gt[None] + 0.5) * 12 - 0.5)[0] < 0.05
    # a detector's box smaller than a person may draw (8 px) is read, not refused: a video loop goes on
    assert landmarker.predict(rgb, boxes=[Detection(np.array([20, 20, 25, 25]), 0.9)], min_confidence=0.8) == []


def test_mediapipe_gives_each_face_its_eyes_nose_mouth_and_ears(face_image):
    """The short-range model's six points per face, in image pixels: eyes (the image's left first),
    nose tip and mouth where the face's 68 labelled points have them; the full-range model's boxes,
    mapped to the short-range convention, come without them (the map from points is fitted on the
    short-range ones), and a tile's points move with its boxes."""
    from fkd.detect import Detection, MediaPipeShortAndFull
    rgb, gt = face_image
    det = MediaPipeShortAndFull()
    try:
        (face,) = det.short.detect(rgb)
        assert face.marks.shape == (6, 2)
        eyes = np.linalg.norm(gt[36:42].mean(0) - gt[42:48].mean(0))
        for mark, where in zip(face.marks[:4], (gt[36:42].mean(0), gt[42:48].mean(0), gt[30], gt[48:68].mean(0))):
            assert np.linalg.norm(mark - where) < 0.25 * eyes, (mark, where)
        assert all(d.marks is None for d in det._to_short(det.full.detect(rgb)))
        moved = det._in_tile(rgb, 40, 30, 200, lambda tile: [Detection(np.array([10, 10, 50, 50], np.float32), 0.9,
                                                                        np.zeros((6, 2), np.float32))])
        assert moved[0].box.tolist() == [50, 40, 90, 80] and (moved[0].marks == [40, 30]).all()
    finally:
        det.close()


def test_a_box_the_locator_does_not_believe_costs_no_pass_of_the_model(landmarker, face_image):
    """A box on a blank wall: the locator's confidence is under min_confidence, so the face is dropped
    without face68's pass (nor its second pass or mirror); with no threshold, the face68 pass runs."""
    rgb, gt = face_image
    wall = np.full_like(rgb, 128)
    box = loose_box(gt, 1.2, 0.0, 0.0)
    before = landmarker.passes, landmarker.locator.passes
    assert landmarker.predict(wall, boxes=[box], flip_test=True, min_confidence=landmarker.min_confidence) == []
    assert landmarker.passes == before[0] and landmarker.locator.passes == before[1] + 1
    points, conf = landmarker.predict_boxes(wall, [box], "face", flip_test=True, min_confidence=landmarker.min_confidence)
    assert conf[0] < landmarker.min_confidence and landmarker.passes == before[0]  # the locator's answer
    face = landmarker.predict(rgb, boxes=[box], flip_test=False, min_confidence=landmarker.min_confidence)[0]
    assert landmarker.passes > before[0] and nme(face.keypoints[None], gt[None])[0] < 0.05


def test_only_cards_that_name_a_locator_get_one():
    from fkd.weights import read_card
    for m in fkd.MODELS:
        lm = fkd.Landmarker(m, detector=None)
        assert (lm.locator is not None) == bool(read_card(m).get("locator")), m
    assert read_card("face68")["locator"] == "face68_locator"
    assert "face68_locator" not in fkd.MODELS  # a part of face68, not a choice
    assert fkd.Landmarker("face68", settings=fkd.Settings(locate=False)).locator is None


def test_a_retrained_model_finds_its_locator_beside_its_weights(tmp_path):
    """A copy of face68's files elsewhere (a retrained pair) uses the locator beside it, not the shipped one."""
    from fkd.weights import WEIGHTS_DIR
    for name in ("face68", "face68_locator"):
        for suffix in (".safetensors", ".json"):
            shutil.copy(WEIGHTS_DIR / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    lm = fkd.Landmarker(tmp_path / "face68", detector=None, backend="onnx")
    assert lm.locator._weights == tmp_path / "face68_locator.safetensors"


def test_video_frames_skip_the_full_range_detector_beside_a_close_face(face_image, group_photo):
    """`detect_fast` (predict with small_faces=False, as video frames are read): a face filling a good
    part of the frame is enough, the slow full-range model is not even loaded; a frame without a close
    face gets both models, as a photo does."""
    from fkd.detect import CLOSE_FACE, MediaPipeShortAndFull
    rgb, _ = face_image
    det = MediaPipeShortAndFull()
    try:
        close = det.detect_fast(rgb)
        assert len(close) == 1 and max(close[0].box[2:] - close[0].box[:2]) >= CLOSE_FACE * min(rgb.shape[:2])
        assert det._full is None
        crowd, _ = group_photo
        far = det.detect_fast(crowd)
        assert det._full is not None
        assert [d.box.tolist() for d in far] == [d.box.tolist() for d in det.detect(crowd)]
    finally:
        det.close()
    lm = fkd.Landmarker(detector=MediaPipeShortAndFull())
    try:
        assert len(lm.predict(rgb, small_faces=False)) == 1 and lm.detector._full is None
        assert len(lm.predict(rgb)) == 1 and lm.detector._full is not None  # a photo: both models
    finally:
        lm.close()
