"""`python -m fkd.export`: the graph and its sidecar are all a caller needs to get the Landmarker's points."""
import json
import subprocess
import sys

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from conftest import ROOT, val_faces

import fkd
from fkd.geometry import landmark_box


def crop_by_the_sidecar(rgb: np.ndarray, box: np.ndarray, info: dict) -> tuple[np.ndarray, np.ndarray]:
    """The model input and the 2×3 map image -> input, written from the sidecar's words alone."""
    _, c, h, w = info["input"]["shape"]
    crop = info["crop"]
    side = max(box[2] - box[0], box[3] - box[1])
    cx = (box[0] + box[2]) / 2 + crop["dx"] * side
    cy = (box[1] + box[3]) / 2 + crop["dy"] * side
    sx, sy = w / (crop["w"] * side), h / (crop["h"] * side)
    M = np.array([[sx, 0, (w - 1) / 2 - sx * cx], [0, sy, (h - 1) / 2 - sy * cy]])
    patch = cv2.warpAffine(rgb, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if c == 1:
        patch = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)[..., None]
    x = (patch.astype(np.float32) / 255 - 0.5).transpose(2, 0, 1)[None]
    return x, M


@pytest.mark.parametrize("model", ["face68", "imm58"])
def test_the_exported_graph_gives_the_landmarkers_points(tmp_path, model):
    out = tmp_path / "m.onnx"
    p = subprocess.run([sys.executable, "-m", "fkd.export", model, "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    info = json.loads((tmp_path / "m.onnx.json").read_text())
    assert info["model"] == model and info["onnx"] == "m.onnx"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    lm = fkd.Landmarker(model, backend="onnx", flip_test=False)
    faces = val_faces() if model == "face68" else []
    if not faces:  # IMM: its labelled fixture faces
        from conftest import FIXTURES
        from fkd.data import find_imm
        faces, _ = find_imm(FIXTURES / "data" / "imm_face_db")
    assert len(faces) >= 3
    for r in faces[:4]:
        rgb = fkd.load_image(r.image)
        box = landmark_box(r.points)
        x, M = crop_by_the_sidecar(rgb, box, info)
        points, confidence = session.run(None, {info["input"]["name"]: x})
        assert points.shape == (1, info["points"], 2) and 0 <= confidence[0] <= 1
        shifted = points[0] + np.asarray(info["label_shift"])
        back = (shifted - M[:, 2]) / np.diag(M[:, :2])  # input pixels -> image pixels
        (face,) = lm.predict(rgb, boxes=[box], box_kind="landmarks")
        tolerance = 0.01 / M[0, 0]  # 0.01 px of the model input, in image pixels
        assert np.abs(back - face.keypoints).max() < tolerance
    lm.close()


def test_the_sidecar_describes_the_model_and_the_cli_refuses_unknown_models(tmp_path, capsys):
    from fkd import export
    assert export.main(["no_such_model", "--out", str(tmp_path / "x.onnx")]) == 1
    assert capsys.readouterr().err.strip().endswith("no_such_model.json: model card not found (train it with train.py, "
                                                    "or pick another model)")
    assert not (tmp_path / "x.onnx").exists()


def test_the_sidecar_says_how_the_detectors_points_place_the_crop():
    """From the sidecar's words alone: BlazeFace's six points, turned level as the rule says, give the
    crop `Landmarker.marked_crops` cuts, for an upright head and one turned 30°; IMM's layout has none."""
    from fkd.detect import make_detector
    from fkd.geometry import turned_image
    info = json.loads((ROOT / "weights" / "onnx" / "face68.onnx.json").read_text())
    rule = info["detector_points_to_landmark_box"]
    assert json.loads((ROOT / "weights" / "onnx" / "imm58.onnx.json").read_text())["detector_points_to_landmark_box"] is None
    lm = fkd.Landmarker("face68", detector=None)
    det = make_detector("mediapipe-short")
    for degrees in (0, 30):
        rgb, _ = turned_image(fkd.load_image(val_faces()[0].image), degrees)
        (d,) = det.detect(rgb)
        p = d.marks.astype(np.float64)
        roll = np.degrees(np.arctan2(p[1, 1] - p[0, 1], p[1, 0] - p[0, 0]))
        level = cv2.getRotationMatrix2D(tuple(p.mean(0)), roll, 1.0) if abs(roll) > 10 else np.eye(2, 3)
        assert (abs(roll) > 10) == bool(degrees)
        p = p @ level[:, :2].T + level[:, 2]
        c, s = p[:4].mean(0), max(d.box[2] - d.box[0], d.box[3] - d.box[1])
        dx, dy, log_side = np.asarray(rule["weights"]) @ np.r_[1.0, ((p - c) / s).reshape(-1)]
        centre, half = c + np.array([dx, dy]) * s, np.exp(log_side) * s / 2
        M = crop_by_the_sidecar(rgb, np.r_[centre - half, centre + half], info)[1]
        expected = (np.vstack([M, [0, 0, 1]]) @ np.vstack([level, [0, 0, 1]]))[:2]
        np.testing.assert_allclose(lm.marked_crops([d.box], [d.marks])[0][0], expected, atol=1e-4)
    det.close()
