"""`pip install .` in a fresh venv: `import fkd` and the fkd-* commands work from another folder, weights included.

The venv sees this Python's packages (--system-site-packages) and the install skips dependencies and
build isolation, so the test builds and installs fkd itself (~10 s) instead of downloading its deps.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("install")
    src = base / "src"  # a copy, so that the build's build/ and fkd.egg-info never land in the checkout
    shutil.copytree(ROOT / "fkd", src / "fkd", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "weights", src / "weights", ignore=shutil.ignore_patterns("reports", "teachers"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    p = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
                       capture_output=True, text=True, timeout=600, cwd=base)
    assert p.returncode == 0, p.stderr
    shutil.rmtree(src)  # the installed package must not lean on its source
    return env_dir


def run(venv, *cmd, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"})


def test_import_fkd_finds_its_weights_in_the_installed_package(venv, tmp_path):
    code = ("import fkd, fkd.weights as w; print(fkd.__file__); print(w.WEIGHTS_DIR); "
            "print(sorted(p.name for p in w.WEIGHTS_DIR.iterdir()))")
    p = run(venv, str(venv / "bin" / "python"), "-c", code, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    module, weights, names = p.stdout.splitlines()
    assert module.startswith(str(venv)) and weights.startswith(str(venv)) and weights.endswith("fkd/_weights")
    assert {"face68.safetensors", "face68.json", "calibration.json", "face_detection_short_range.tflite"} <= set(eval(names))
    assert "teachers" not in names and "reports" not in names


def test_fkd_predict_command_from_another_folder(venv, tmp_path):
    photo = tmp_path / "me.jpg"
    shutil.copy(sorted(FIXTURES.glob("*.jpg"))[0], photo)
    p = run(venv, "fkd-predict", "me.jpg", "--jsonl", "out.jsonl", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    entry = json.loads((tmp_path / "out.jsonl").read_text())
    assert entry["image"] == "me.jpg" and entry["model"] == "face68" and len(entry["faces"][0]["keypoints"]) == 68
    for command in ("fkd-evaluate", "fkd-video", "fkd-export"):
        p = run(venv, command, "--help", cwd=tmp_path)
        assert p.returncode == 0 and "usage" in p.stdout, (command, p.stderr)
