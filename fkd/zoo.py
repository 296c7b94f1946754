"""The models a person picks from: the single list behind the app's dropdowns, the CLIs' help, the
README and `fkd.MODELS`.

    face68            68 points, the default on every machine: the fastest, within a hair of the best
    face68_accurate   68 points, a hair more accurate, ~1.5x the time on CPUs without bfloat16
    face68_baseline   the course's ResNet18 coordinate regression, for comparison
    imm58             the course's Part 2: 58 IMM points, frontal studio faces
    nose              the course's Part 1: the nose tip, frontal studio faces

Weights that serve only as teachers or starting points of training recipes sit in
weights/teachers/; a name finds them there too, but no list offers them.
"""
from __future__ import annotations

MODELS = {  # name -> what it is for, as the dropdowns show it
    "face68": "68 points · fast (default)",
    "face68_accurate": "68 points · most accurate",
    "face68_baseline": "68 points · ResNet18 baseline",
    "imm58": "58 points · studio faces (IMM)",
    "nose": "nose tip · studio faces (IMM)",
}
DEFAULT_MODEL = "face68"
TEACHERS_DIR = "teachers"  # under weights/: models only training recipes use
OLD_NAMES = {"ibug68_128": "face68", "ibug68_kd": "face68_accurate",  # before the lineup of 2026-12
             "ibug68_resnet18": "face68_baseline"}


def describe(name: str) -> str:
    """A model's dropdown label; a name outside the lineup (a path, a teacher) stands for itself."""
    return MODELS.get(name, name)
