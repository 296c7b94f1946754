"""Boxes off the training crop: the second pass on the crop of the first pass's points (`Settings.recrop_above`).

    python bench/boxes.py [--model face68_accurate] [--data ../shared/data] [--out bench/boxes_report.md]

The models learned from crops of the detector's box, calibrated to the landmark box. A box drawn by
hand is looser and off-centre, and a detector's box can be off on a photo unlike the training ones
(grey). On the 195 validation faces, NME and FR@8 (one pass and the flip test "auto") with:
- MediaPipe's boxes on the photos, and on grey copies of them;
- boxes drawn loose at random, the way a person might: 1.15-1.6× the landmark box, its centre moved
  up to 12 % of the box's side (seeded: the same boxes every run);
each with its first crop placed by the box itself, by the card's locator, or (MediaPipe's boxes) by the
detector's six face points (the default), with the second pass (`Settings.recrop_above`, the default)
and without it (None), and the model passes per face with the flip test off.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import cpu_name, passes_of, report_path  # noqa: E402
from fkd.landmarker import Landmarker, Settings  # noqa: E402
from fkd.data import DATA_DIR, find_300w, split_300w  # noqa: E402
from fkd.evaluate import nearest_face  # noqa: E402
from fkd.geometry import landmark_box  # noqa: E402
from fkd.io import load_image  # noqa: E402
from fkd.metrics import nme  # noqa: E402
from fkd.zoo import DEFAULT_MODEL  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def loose_boxes(records, seed: int = 0) -> list[np.ndarray]:
    """A box per face as a person might draw it: square, 1.15-1.6× the landmark box, moved ≤ 12 %."""
    rng = np.random.default_rng(seed)
    out = []
    for r in records:
        b = landmark_box(r.points)
        side = float((b[2:] - b[:2]).max())
        c = (b[:2] + b[2:]) / 2 + rng.uniform(-0.12, 0.12, 2) * side
        half = rng.uniform(1.15, 1.6) * side / 2
        out.append(np.r_[c - half, c + half].astype(np.float32))
    return out


def scores(lm, images, records, boxes, flip) -> tuple[float, float, int]:
    """(NME mean %, FR@8 %, faces not found) of the face nearest each labelled one."""
    preds, missed = [], 0
    for im, r, b in zip(images, records, boxes):
        faces = lm.predict(im, boxes=None if b is None else [b], flip_test=flip, min_confidence=0.0, small_faces=False)
        f = nearest_face(faces, r.points)
        missed += f is None
        preds.append(r.points + 1e6 if f is None else f.keypoints)
    e = 100 * nme(np.stack(preds), np.stack([r.points for r in records]))
    found = e < 1e4
    return float(e[found].mean()), float(100 * (e[found] > 8).mean()), missed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--data", type=Path, default=DATA_DIR)
    ap.add_argument("--out", type=report_path, default=ROOT / "bench" / "boxes_report.md")
    a = ap.parse_args()
    root = a.data / "300w"
    records, _ = find_300w(root)
    _, val = split_300w(records, root)
    photos = [load_image(r.image) for r in val]
    greys = [np.repeat(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[..., None], 3, 2) for im in photos]
    sets = (("MediaPipe boxes", photos, [None] * len(val)), ("MediaPipe boxes, grey photos", greys, [None] * len(val)),
            ("boxes drawn loose (1.15-1.6×, moved ≤ 12 %)", photos, loose_boxes(val)))
    default = Settings().recrop_above
    firsts = {"the box": dict(locate=False, marks=False), "the locator": dict(locate=True, marks=False),
              "the detector's points": dict(locate=True, marks=True)}
    lms = {(first, refine): Landmarker(a.model, threads=1, settings=Settings(**kw, recrop_above=refine))
           for first, kw in firsts.items() for refine in (None, default)}
    if all(lm.locator is None for lm in lms.values()):  # a card without a locator
        lms = {k: lm for k, lm in lms.items() if k[0] != "the locator"}
    rows = []
    for name, images, boxes in sets:
        for (first, refine), lm in lms.items():
            if first == "the detector's points" and boxes[0] is not None:
                continue  # drawn boxes have no points: the same as the row before
            cells = []
            for flip in (False, "auto"):
                before = passes_of(lm)
                mean, fr8, missed = scores(lm, images, val, boxes, flip)
                cells.append(f"{mean:.3f} | {fr8:.1f}")
                if flip is False:
                    per_face, located = ((n - b) / len(val) for n, b in zip(passes_of(lm), before))
            rows.append(f"| {name} | {first} | "
                        f"{'off' if refine is None else f'on ({refine:g})'} | {' | '.join(cells)} | "
                        f"{per_face:.2f} + {located:.2f} | {missed} |")
            print(rows[-1], flush=True)
    for lm in lms.values():
        lm.close()
    text = "\n".join([
        "# Boxes off the training crop: the first crop and the second pass on the crop of the points", "",
        f"`python bench/boxes.py` on {cpu_name()}, model `{a.model}`. Validation split: {len(val)} faces of 300-W "
        "(fkd/splits/300w_val.txt). NME % (inter-ocular) and FR@8 % of the found faces. 'first crop': the box's "
        "own crop (`Settings(locate=False, marks=False)`), the crop of the points the card's locator reads in it "
        "(`Settings(marks=False)`; the default for drawn boxes where the card names one), or the crop the detector's "
        "six face points place (the default for its boxes); 'second pass': `Settings.recrop_above`; 'passes per face': the model's "
        "passes (levelled and re-cropped ones too, detections dropped after too) + the locator's, per labelled "
        "face, flip test off.", "",
        "| boxes | first crop | second pass | NME, one pass | FR@8, one pass | NME, flip test auto | FR@8, auto | "
        "passes per face | not found |",
        "|---|---|---|---|---|---|---|---|---|", *rows, ""])
    a.out.write_text(text)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
