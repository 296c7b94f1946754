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


def pytest_configure(config):
    ARTIFACTS.mkdir(exist_ok=True)
