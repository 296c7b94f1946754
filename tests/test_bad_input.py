"""The bad-input corpus: every case gets a clear message or a correct answer, never a crash."""
import io
import json
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
from conftest import ROOT, W300
from PIL import Image

import fkd
from fkd.io import ImageError, load_image, load_image_sized
from fkd.metrics import nme


@pytest.fixture(scope="module")
def face(face_image):
    return face_image


def png_claiming_size(w: int, h: int) -> bytes:
    """A PNG whose header says w×h: enough for a decompression-bomb check, tiny on disk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name,content,message", [
    ("empty.jpg", b"", "empty"),
    ("notes.jpg", b"just some text, not a photo\n" * 20, "not an image"),
    ("paper.jpg", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n", "not an image"),
    ("bomb.png", png_claiming_size(20000, 20000), "too large"),
])
def test_unusable_files_get_a_clear_message(tmp_path, name, content, message):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ImageError, match=message) as e:
        load_image(p)
    assert name in str(e.value)


def test_truncated_jpeg(tmp_path, face):
    buf = io.BytesIO()
    Image.fromarray(face[0]).save(buf, "JPEG", quality=90)
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(tmp_path / "cut.jpg")


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("fmt", ["png16", "cmyk", "rgba", "gray", "tiff", "gif", "palette"])
def test_unusual_formats_give_the_right_face(landmarker, face, tmp_path, fmt):
    rgb, gt = face
    im = Image.fromarray(rgb)
    path = tmp_path / f"face_{fmt}"
    if fmt == "png16":
        a = (np.asarray(im.convert("L")).astype(np.uint16) * 257)
        Image.fromarray(a).save(path.with_suffix(".png"))
        path = path.with_suffix(".png")
        assert Image.open(path).mode.startswith("I")
    elif fmt == "cmyk":
        path = path.with_suffix(".jpg")
        im.convert("CMYK").save(path, quality=95)
    elif fmt == "rgba":
        path = path.with_suffix(".png")
        a = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
        a[:10, :10, 3] = 0  # some transparent pixels
        Image.fromarray(a).save(path)
    elif fmt == "gray":
        path = path.with_suffix(".jpg")
        im.convert("L").save(path)
    elif fmt == "tiff":
        path = path.with_suffix(".tif")
        im.save(path)
    elif fmt == "gif":  # animated: the first frame is the face, the second is black
        path = path.with_suffix(".gif")
        im.save(path, save_all=True, append_images=[Image.new("RGB", im.size)], duration=100, loop=0)
    elif fmt == "palette":
        path = path.with_suffix(".png")
        im.convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    loaded = load_image(path)
    assert loaded.shape == rgb.shape and loaded.dtype == np.uint8
    faces = landmarker.predict(path)
    assert len(faces) == 1, fmt
    assert nme(faces[0].keypoints[None], gt[None])[0] < 0.1


def test_tiny_images_have_no_face(landmarker):
    # strips up to MAX_ASPECT (1×100, 40×4000): no tiles or turned copies to fail on
    for shape in [(1, 1, 3), (1, 1), (3, 7, 3), (1, 5, 3), (2, 200, 3), (1, 100, 3), (100, 1, 3), (40, 4000, 3),
                  (4000, 40, 3), (64, 4096, 3)]:
        assert landmarker.predict(np.zeros(shape, np.uint8)) == [], shape


THIN = [(4000, 3), (3, 4000), (10000, 2), (2, 10000), (202, 2), (1, 101)]  # (width, height): past MAX_ASPECT


@pytest.mark.parametrize("w, h", THIN)
def test_thin_strips_are_refused_with_their_size(landmarker, tmp_path, w, h):
    """Shrunk for the detectors, a 4000×3 strip had 0 rows: an OpenCV assertion, "Something went wrong"."""
    message = f"the image is {w}×{h} pixels: too thin to hold a face (one side is over 100 times the other)"
    path = tmp_path / f"strip_{w}x{h}.png"
    Image.new("RGB", (w, h), (120, 100, 90)).save(path)
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert str(e.value) == f"{path}: {message}"
    with pytest.raises(ImageError) as e:
        landmarker.predict(np.full((h, w, 3), 120, np.uint8))
    assert str(e.value) == message


def test_predict_cli_answers_thin_strips_in_its_json(tmp_path, capsys):
    from fkd import predict
    paths = []
    for w, h in THIN[:4] + [(1, 1)]:
        paths.append(tmp_path / f"s{w}x{h}.png")
        Image.new("RGB", (w, h), (120, 100, 90)).save(paths[-1])
    assert predict.main([str(q) for q in paths]) == 1  # 1: some images could not be done (in-process: no traceback)
    res = json.loads(capsys.readouterr().out, parse_constant=no_constant)
    assert [r.get("error") for r in res[:4]] == [f"{q}: the image is {w}×{h} pixels: too thin to hold a face "
                                                  "(one side is over 100 times the other)" for q, (w, h) in zip(paths, THIN[:4])]
    assert (res[4]["image"], res[4]["faces"], res[4]["width"]) == (str(paths[4]), [], 1)  # 1×1: no face in it


def test_bad_arrays_are_explained(landmarker):
    for a in (np.zeros((10, 10, 2), np.uint8), np.zeros((0, 10, 3), np.uint8), np.zeros(5)):
        with pytest.raises(ImageError, match="shape"):
            landmarker.predict(a)


def test_sane_big_photo_is_downscaled_not_rejected(tmp_path):
    Image.new("RGB", (6000, 4000), (200, 180, 160)).save(tmp_path / "big.jpg", quality=80)
    a, (w, h) = load_image_sized(tmp_path / "big.jpg")
    assert (w, h) == (6000, 4000) and max(a.shape[:2]) <= 4096 and a.shape[1] / a.shape[0] == pytest.approx(1.5, abs=0.01)


def test_a_dozen_faces(landmarker, face):
    rgb, _ = face
    tile = np.asarray(Image.fromarray(rgb).resize((160, 160)))
    grid = np.concatenate([np.concatenate([tile] * 4, 1)] * 3, 0)  # 3 rows × 4 faces
    faces = landmarker.predict(grid)
    assert len(faces) >= 10
    for f in faces:
        cx, cy = f.keypoints.mean(0)
        assert f.box[0] <= cx <= f.box[2] and f.box[1] <= cy <= f.box[3]


def test_face_cut_by_the_border(landmarker, face):
    rgb, gt = face
    cut_at = int(gt[:, 0].min() + 0.75 * (gt[:, 0].max() - gt[:, 0].min()))  # a quarter of the face is gone
    faces = landmarker.predict(rgb[:, :cut_at], boxes=[[gt[:, 0].min() - 20, gt[:, 1].min() - 40, cut_at - 1, gt[:, 1].max() + 10]])
    assert len(faces) == 1
    visible = gt[:, 0] < cut_at
    err = np.linalg.norm(faces[0].keypoints[visible] - gt[visible], axis=1).mean()
    assert err / np.linalg.norm(gt[36] - gt[45]) < 0.12


def test_missing_or_damaged_weights_name_the_file(tmp_path):
    import shutil
    with pytest.raises(fkd.WeightsError, match="nowhere"):
        fkd.Landmarker(tmp_path / "nowhere")
    shutil.copy(ROOT / "weights" / "nose.json", tmp_path / "nose.json")
    with pytest.raises(fkd.WeightsError, match="weights file not found"):
        fkd.Landmarker(tmp_path / "nose")
    (tmp_path / "nose.safetensors").write_bytes(b"\0" * 100)
    with pytest.raises(fkd.WeightsError, match="damaged"):
        fkd.Landmarker(tmp_path / "nose")
    shutil.copy(ROOT / "weights" / "imm58.safetensors", tmp_path / "nose.safetensors")
    with pytest.raises(fkd.WeightsError, match="does not match the architecture"):
        fkd.Landmarker(tmp_path / "nose")


def no_constant(name):
    raise AssertionError(f"{name} in the JSON: not valid JSON")


def evaluate_cli(capsys, *args):
    """`python -m fkd.evaluate args` run in-process (its main()): exit code, stdout and stderr."""
    from types import SimpleNamespace
    from fkd import evaluate
    capsys.readouterr()
    rc = evaluate.main([str(a) for a in args])
    out = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)


def test_evaluate_skips_bad_labels_with_a_count(tmp_path, capsys):
    import shutil
    src = sorted(W300.rglob("*.pts"))[:2]
    for i, s in enumerate(src):
        shutil.copy(s.with_suffix(".jpg"), tmp_path / f"f{i}.jpg")
    shutil.copy(src[0], tmp_path / "f0.pts")
    (tmp_path / "f1.pts").write_text("version: 1\nn_points: 3\n{\n1 1\n2 2\n3 3\n}\n")
    shutil.copy(src[0].with_suffix(".jpg"), tmp_path / "unlabelled.jpg")
    p = evaluate_cli(capsys, tmp_path, "--box", "landmarks")
    assert p.returncode == 0, p.stderr
    assert "skipped 2 file(s)" in p.stderr
    assert '"faces": 1' in p.stdout and '"skipped_files": 2' in p.stdout


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e39"])
def test_evaluate_skips_a_label_that_is_not_a_finite_number_by_name(tmp_path, capsys, value):
    """A NaN in one .pts made every metric NaN and the JSON invalid (NaN is not JSON), with exit code 0.
    The parser refuses the label, as any malformed one: the face is skipped, named and counted, and
    the others are scored (as train.py trains on what it can read)."""
    import shutil
    src = sorted(W300.rglob("*.pts"))[:2]
    for i, s in enumerate(src):
        shutil.copy(s.with_suffix(".jpg"), tmp_path / f"f{i}.jpg")
        shutil.copy(s, tmp_path / f"f{i}.pts")
    lines = (tmp_path / "f1.pts").read_text().splitlines()
    lines[3 + 29] = f"{value} {lines[3 + 29].split()[1]}"  # point 30, the nose bridge
    (tmp_path / "f1.pts").write_text("\n".join(lines) + "\n")
    out = tmp_path.parent / f"{tmp_path.name}_m.json"
    p = evaluate_cli(capsys, tmp_path, "--box", "landmarks", "--json", out)
    assert p.returncode == 0, p.stderr
    shown = "1e+39" if value == "1e39" else value
    assert f"skipped 1 file(s):\n  {tmp_path / 'f1.pts'}: point 30 is not a finite number ({shown} " in p.stderr
    for text in (p.stdout, out.read_text()):
        m = json.loads(text, parse_constant=no_constant)
        assert m["faces"] == 1 and m["skipped_files"] == 1 and 0 < m["nme_mean_percent"] < 8
    (tmp_path / "f0.pts").write_text((tmp_path / "f1.pts").read_text())
    p = evaluate_cli(capsys, tmp_path, "--box", "landmarks", "--json", out)  # no face left to score
    assert p.returncode == 1 and p.stdout == "", p.stderr
    assert "skipped 2 file(s)" in p.stderr and f"error: no labelled faces with 68 points under {tmp_path}" in p.stderr


def test_a_small_distant_face_is_found_by_the_full_range_model(landmarker, face):
    rgb, gt = face
    small = np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] // 3, rgb.shape[0] // 3), Image.BILINEAR))
    canvas = np.full((1200, 1600, 3), 90, np.uint8)
    canvas[700:700 + small.shape[0], 300:300 + small.shape[1]] = small
    faces = landmarker.predict(canvas)
    assert len(faces) == 1
    expected = (gt + 0.5) / 3 - 0.5 + [300, 700]
    assert nme(faces[0].keypoints[None], expected[None])[0] < 0.1


def test_small_faces_beside_a_large_one_are_found_too(landmarker, face):
    """The full-range model used to run only when the short-range one found nothing, so a group
    photo with one large face lost its small ones."""
    rgb, gt = face
    small = np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] // 3, rgb.shape[0] // 3), Image.BILINEAR))
    canvas = np.full((1200, 1600, 3), 90, np.uint8)
    canvas[100:100 + rgb.shape[0], 100:100 + rgb.shape[1]] = rgb
    canvas[800:800 + small.shape[0], 1200:1200 + small.shape[1]] = small
    faces = sorted(landmarker.predict(canvas), key=lambda f: f.box[0])
    assert len(faces) == 2
    assert nme(faces[0].keypoints[None], (gt + [100, 100])[None])[0] < 0.1
    assert nme(faces[1].keypoints[None], ((gt + 0.5) / 3 - 0.5 + [1200, 800])[None])[0] < 0.1


@pytest.mark.parametrize("portrait", [False, True])
def test_faces_in_a_panorama_are_found_in_tiles(landmarker, face, portrait):
    """A picture far wider than tall (or taller than wide) reaches the detectors at 128 or 192 px:
    its faces vanish. It is also looked at in square tiles overlapping by half; one face sits across
    a tile's inner edge (its cut box must not win over the whole one)."""
    rgb, gt = face
    h, w = rgb.shape[:2]
    spots = [(h, w), (h, 6 * w + w // 2), (h, 13 * w)]  # (y, x); the middle face straddles an inner edge
    size = (3 * h, 15 * w)
    if portrait:  # the faces one above the other: tiles move down instead of across
        spots, size = [(x * h // w, y * w // h) for y, x in spots], (15 * h, 3 * w)
    canvas = np.full((*size, 3), 90, np.uint8)
    for y, x in spots:
        canvas[y:y + h, x:x + w] = rgb
    faces = landmarker.predict(canvas)
    assert len(faces) == 3
    for (y, x) in spots:
        assert min(nme(f.keypoints[None], (gt + [x, y])[None])[0] for f in faces) < 0.1


@pytest.mark.parametrize("k", [1, 3])
def test_small_faces_in_a_large_group_photo_are_found_in_tiles(landmarker, group_photo, k):
    """A group photo whose faces are small in it: the detectors see the whole picture at 128 or 192 px,
    where these faces are ~6 px. Looked at in tiles too (small_faces, the default for photos), each
    is found, with its points where they belong, and once. k=3: a 4800×3600 photo, worked on at
    4096 px, its points given back in its own pixels."""
    canvas, expected = group_photo
    if k > 1:
        canvas = cv2.resize(canvas, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
        expected = [(e + 0.5) * k - 0.5 for e in expected]
    faces = landmarker.predict(canvas)
    assert len(faces) == len(expected)
    for e in expected:
        assert min(nme(f.keypoints[None], e[None])[0] for f in faces) < 0.15


def test_only_models_that_can_doubt_a_face_look_in_the_tiles(group_photo):
    """A tile's boxes are often weak (the full-range model down to 0.3): a model that says 1.0 for
    everything could not drop the false ones, so it does not look there."""
    lm = fkd.Landmarker("face68_baseline")
    try:
        canvas, _ = group_photo
        assert len(lm.predict(canvas)) == len(lm.predict(canvas, small_faces=False))
    finally:
        lm.close()


def tile_sides(monkeypatch, det) -> list[int]:
    """The side of every tile that `det.detect_small` looks at."""
    sides, real = [], det._small
    monkeypatch.setattr(det, "_small", lambda t: sides.append(t.shape[0]) or real(t))
    return sides


def test_small_face_tiles_go_closer_only_where_they_find_faces(landmarker, face, group_photo, monkeypatch):
    """Tiles of half the short side, then a quarter, ... while the last level gave faces: a portrait
    stops after one level, a crowd goes on; within MAX_SMALL_TILES, never under SMALL_TILE px."""
    from fkd.detect import MAX_SMALL_TILES, SMALL_TILE
    det = landmarker.detector
    assert det.small_face_sides(2 * SMALL_TILE - 2, 2 * SMALL_TILE - 2) == []   # halves would be under SMALL_TILE
    for w, h in [(640, 480), (1024, 768), (1600, 1200), (4032, 3024), (4096, 4096), (4375, 1336), (1200, 16000)]:
        levels = det.small_face_sides(w, h)
        assert levels == [min(w, h) // 2 // 2 ** i for i in range(len(levels))], (w, h)   # half, a quarter, ...
        assert all(side >= SMALL_TILE for side in levels), (w, h)
    levels = det.small_face_sides(1600, 1200)
    assert len(levels) >= 2                                     # room to go closer in the pictures below
    sides = tile_sides(monkeypatch, det)
    portrait = cv2.resize(face[0], (1600, 1200), interpolation=cv2.INTER_CUBIC)
    assert len(landmarker.predict(portrait)) == 1
    assert set(sides) == {levels[0]}                            # found nothing small: no closer look
    sides.clear()
    canvas, expected = group_photo
    assert len(landmarker.predict(canvas)) == len(expected)
    assert set(sides) == set(levels) and len(sides) <= MAX_SMALL_TILES


def test_tiles_cover_the_picture():
    from fkd.detect import _tile_starts
    for n, side in [(1600, 600), (1200, 600), (4096, 1536), (4375, 668), (1125, 281)]:
        starts = _tile_starts(n, side, None)
        assert starts[0] == 0 and starts[-1] == n - side
        assert all(b - a <= side / 2 + 1 for a, b in zip(starts, starts[1:]))  # overlap by half


def test_thin_strips_are_not_tiled():
    from fkd.detect import MIN_TILE, _tile_starts
    assert _tile_starts(4375, 1336) == [0, 608, 1216, 1823, 2431, 3039]  # overlap ≥ half a tile
    assert len(_tile_starts(4096, MIN_TILE)) == 12 and _tile_starts(4096, MIN_TILE)[-1] == 4096 - MIN_TILE


def test_a_face_both_detectors_find_is_one_face(face):
    from fkd.detect import MediaPipeShortAndFull
    from fkd.geometry import box_iou
    assert box_iou(np.array([0, 0, 10, 10.0]), np.array([5, 0, 15, 10.0])) == pytest.approx(1 / 3)
    assert box_iou(np.array([0, 0, 10, 10.0]), np.array([20, 20, 30, 30.0])) == 0.0
    det = MediaPipeShortAndFull()
    try:
        rgb = face[0]
        assert len(det.short.detect(rgb)) == 1 and len(det.full.detect(rgb)) == 1
        assert len(det.detect(rgb)) == 1
    finally:
        det.close()


def test_damaged_calibration_names_the_file(tmp_path):
    from fkd.calibration import load_calibration
    bad = tmp_path / "calibration.json"
    for text in ("garbage", '{"ibug68": {"dx": 0.1}}', "[1, 2]"):
        bad.write_text(text)
        with pytest.raises(fkd.WeightsError, match="calibration.json: damaged calibration file"):
            load_calibration("ibug68", bad)
    # another layout's broken entry does not stop this one from loading
    bad.write_text('{"ibug68": {"dx": 0.0, "dy": 0.06, "scale": 0.96}, "imm58": "broken"}')
    assert load_calibration("ibug68", bad).dy == 0.06
    folder = tmp_path / "calibration_dir.json"
    folder.mkdir()
    with pytest.raises(fkd.WeightsError, match="damaged calibration file"):
        load_calibration("ibug68", folder)


def test_a_damaged_map_from_the_detectors_points_is_named_and_a_missing_one_falls_back(tmp_path):
    from fkd.calibration import load_mark_calibration
    bad = tmp_path / "calibration.json"
    row = [0.1] * 13
    for entry in ("broken", {"weights": [[1, 2]]}, {"weights": [row, row]}, {"weights": [row, row, row[:12]]}):
        bad.write_text(json.dumps({"ibug68_marks": entry}))
        with pytest.raises(fkd.WeightsError, match="damaged calibration file.*ibug68_marks"):
            load_mark_calibration("ibug68", bad)
    bad.write_text('{"ibug68": {"dx": 0.0, "dy": 0.06, "scale": 0.96}}')
    assert load_mark_calibration("ibug68", bad) is None  # no map: the Landmarker places crops by its locator


def test_the_map_from_the_detectors_points_fits_in_the_frame_it_is_used_in():
    """`fit_marks` on faces that are one face moved, scaled and turned past level_above: the fitted map
    gives back each landmark box exactly, taken in the frame `Landmarker.marked_crops` levels to (a
    landmark box taken unlevelled would change shape with the turn, and the fit would miss it)."""
    from fkd.detect import Detection
    from fkd.geometry import apply_affine, turn
    from training.calibrate import box_errors, fit_marks

    rng = np.random.default_rng(0)
    points = rng.normal(0, 30, (68, 2)) + [200, 200]
    points[36], points[45] = [160, 190], [240, 190]  # outer eye corners, level
    marks = np.array([[170, 190], [230, 190], [200, 215], [200, 240], [140, 200], [260, 200]], np.float64)
    box = np.array([130, 140, 270, 280], np.float64)
    found, labelled = [], []
    for i in range(30):  # upright, or tilted past level_above (10°) either way
        A = turn([200, 200], 0 if i % 3 == 0 else rng.uniform(12, 40) * rng.choice([-1, 1])) * rng.uniform(0.5, 2)
        A[:, 2] += rng.uniform(-50, 50, 2)
        k = float(np.sqrt(abs(np.linalg.det(A[:, :2]))))
        c = apply_affine(A, [[200, 210]])[0]
        found.append(Detection(np.r_[c - 70 * k, c + 70 * k], 0.9, apply_affine(A, marks)))
        labelled.append(apply_affine(A, points))
    cal, boxes, targets = fit_marks(found, labelled)
    errors = box_errors(boxes, targets)
    assert errors["centre_err_mean"] < 1e-6 and errors["size_ratio_log_std"] < 1e-6


def test_calibration_refits_what_it_has_data_for_and_keeps_the_rest(tmp_path, capsys):
    """A wrong --data used to write {} over the shipped calibration (and the models then ran
    uncalibrated without a word)."""
    import json
    from conftest import IMM
    out = tmp_path / "calibration.json"
    out.write_text(json.dumps({"ibug68": {"dx": 0.0, "dy": 0.06, "scale": 0.96}}))
    from training import calibrate
    with pytest.raises(SystemExit) as e:  # in-process: argparse's refusal
        calibrate.main(["--out", str(out), "--data", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"{tmp_path / 'nowhere'}: holds neither 300w/ nor imm_face_db/" in err, err
    assert "RuntimeWarning" not in err
    cmd = [sys.executable, "-m", "training.calibrate", "--out", str(out), "--data"]
    assert json.loads(out.read_text()) == {"ibug68": {"dx": 0.0, "dy": 0.06, "scale": 0.96}}
    data = tmp_path / "data"
    data.mkdir()
    (data / "imm_face_db").symlink_to(IMM)
    p = subprocess.run(cmd + [str(data)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    fitted = json.loads(out.read_text())
    assert p.returncode == 0 and fitted["ibug68"]["dy"] == 0.06, p.stderr  # not refitted: kept
    assert 0.8 < fitted["imm58"]["scale"] < 1.2 and "training faces of imm_face_db" in fitted["imm58"]["fitted_on"]
