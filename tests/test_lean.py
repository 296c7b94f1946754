"""The runtime without PyTorch: the shipped ONNX graphs match their weights, and the app's endpoints and
the CLIs run in a process in which torch cannot be imported."""
import hashlib
import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import FIXTURES, ROOT, val_faces

import fkd
from fkd.weights import WEIGHTS_DIR, graph_paths, load_model

NO_TORCH = "import sys; sys.modules['torch'] = sys.modules['torchvision'] = None; "


def shipped() -> list[str]:
    """The lineup and the locators their cards name: every model the runtime may load."""
    from fkd.weights import read_card
    return [*fkd.MODELS, *(read_card(m)["locator"] for m in fkd.MODELS if read_card(m).get("locator"))]


@pytest.mark.parametrize("model", shipped())
def test_each_shipped_graph_is_made_from_its_shipped_weights(model):
    graph, side = graph_paths(model)
    info = json.loads(side.read_text())
    assert info["weights_sha256"] == hashlib.sha256((WEIGHTS_DIR / f"{model}.safetensors").read_bytes()).hexdigest(), \
        f"{graph} was exported from other weights: python -m fkd.export {model} --out {graph}"
    assert graph.stat().st_size < 10e6  # a Hugging Face Space takes no larger file without LFS
    net, _ = load_model(model)
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random(info["input"]["shape"], dtype=np.float32) - 0.5
    points, confidence = session.run(None, {"x": x})
    with torch.inference_mode():
        t = torch.from_numpy(x)
        want, want_c = net.predict_with_confidence(t) if hasattr(net, "predict_with_confidence") else (net(t)[0], None)
    assert np.abs(points - want.numpy()).max() < 1e-3  # input pixels
    if want_c is not None:
        assert abs(float(confidence[0]) - float(want_c[0])) < 1e-4


def run_without_torch(code: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_predict_gives_the_same_points_without_torch(tmp_path):
    images = [str(FIXTURES / "afw_2060241469_1.jpg"), str(val_faces()[0].image)]
    out = tmp_path / "lean.json"
    p = run_without_torch("import runpy; sys.argv = ['fkd.predict', *%r, '--json', %r]; "
                          "runpy.run_module('fkd.predict', run_name='__main__')" % (images, str(out)))
    assert p.returncode == 0, p.stderr[-2000:]
    full = subprocess.run([sys.executable, "-m", "fkd.predict", *images], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert full.returncode == 0, full.stderr[-2000:]
    lean, want = json.loads(out.read_text()), json.loads(full.stdout)
    assert [len(e["faces"]) for e in lean] == [len(e["faces"]) for e in want] and sum(len(e["faces"]) for e in want)
    for a, b in zip(lean, want):
        for fa, fb in zip(a["faces"], b["faces"]):
            assert np.allclose(fa["keypoints"], fb["keypoints"], atol=0.011)  # JSON rounds to 0.01 px


def test_the_apps_endpoints_run_without_torch(tmp_path):
    photo, other = str(val_faces()[0].image), str(val_faces()[1].image)
    code = f"""
import app, numpy as np
drawn, result = app.keypoints_api({photo!r}, "auto", "face68")
assert len(result["faces"]) >= 1 and len(result["faces"][0]["keypoints"]) == 68
assert app.filters_api("face68").ndim == 3 and app.filters_api("face68_baseline").ndim == 3
assert app.feature_maps_api({photo!r}, "face68").ndim == 3
video = app.morph_api({photo!r}, {other!r}, 4, 8, False)
assert video and open(video, "rb").read(12)[4:8] == b"ftyp"
for m in app.MODELS:
    assert len(app.keypoints_api({photo!r}, "auto", m)[1]["faces"]) >= 1, m
import imageio.v3 as iio
from fkd.io import load_image
img = load_image({photo!r})
h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
iio.imwrite({str(tmp_path / "clip.mp4")!r}, np.stack([img[:h, :w]] * 4), fps=8, codec="libx264", macro_block_size=1)
drawn, points = app.video_api({str(tmp_path / "clip.mp4")!r}, "face68", 0.5)
assert open(drawn, "rb").read(12)[4:8] == b"ftyp" and points
assert sys.modules["torch"] is None
print("ok")
"""
    p = run_without_torch(code)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-3000:]
