"""Is model B better than model A on the same faces? Paired per-face NME and a bootstrap interval.

    python bench/paired.py ibug68 face68_accurate [--data ../shared/data] [--resamples 5000]
    python bench/paired.py face68_accurate face68_accurate --temperatures 1 3     # one model, two decodings

A mean NME over 195 faces moves by ±0.1 with the faces drawn; two models' errors on the same face
move together, so their per-face difference is what tells a real gain from noise. Also prints
the landmark model's confidence on the labelled faces and on boxes moved off them, which is what
the Landmarker's 0.8 threshold (drop detections the model does not believe) rests on.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fkd.data import DATA_DIR, find_300w, split_300w  # noqa: E402
from fkd.evaluate import evaluate_records  # noqa: E402
from fkd.geometry import box_side, landmark_box  # noqa: E402
from fkd.io import load_image_sized  # noqa: E402
from fkd.landmarker import Landmarker, Settings  # noqa: E402
from fkd.metrics import nme  # noqa: E402


def per_face_nme(name: str, records, box: str, temperature: float | None = None) -> dict[str, float]:
    """`temperature`: decode with this one instead of the shipped (torch backend: the ONNX graph has its own)."""
    lm = Landmarker(name, backend="torch" if temperature else "auto")
    if temperature:
        lm.model.decode_temperature = temperature
    preds, gts, kept, _ = evaluate_records(lm, records, box)
    lm.close()
    return dict(zip([str(r.image) for r in kept], 100 * nme(np.stack(preds), np.stack(gts))))


def confidences(name: str, records) -> tuple[np.ndarray, np.ndarray]:
    """Confidence with the landmark box, and with boxes of its size moved one side left, right, up."""
    lm = Landmarker(name, settings=Settings(min_confidence=0.0))
    on, off = [], []
    for r in records:
        rgb, (W, _) = load_image_sized(r.image)
        b = landmark_box(r.points) / (W / rgb.shape[1])
        side = box_side(b)
        moved = [b + np.array([dx, dy, dx, dy]) * side for dx, dy in ((-1, 0), (1, 0), (0, -1))]
        on += lm.predict_boxes(rgb, [b], "landmarks")[1]
        off += lm.predict_boxes(rgb, moved, "landmarks")[1]
    lm.close()
    return np.array(on), np.array(off)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--data", default=str(DATA_DIR))
    p.add_argument("--resamples", type=int, default=5000)
    p.add_argument("--temperatures", type=float, nargs=2, metavar=("TA", "TB"),
                   help="grid models: decode A and B at these softmax temperatures (fkd.models.DECODE_TEMPERATURE)")
    a = p.parse_args()
    sub = Path(a.data) / "300w"
    recs, _ = find_300w(sub)
    _, val = split_300w(recs, sub)
    rng = np.random.default_rng(0)
    for box in ("landmarks", "detector"):
        ta, tb = a.temperatures or (None, None)
        ea, eb = per_face_nme(a.a, val, box, ta), per_face_nme(a.b, val, box, tb)
        keys = sorted(set(ea) & set(eb))
        d = np.array([eb[k] - ea[k] for k in keys])
        boots = d[rng.integers(0, len(d), (a.resamples, len(d)))].mean(1)
        lo, hi = np.percentile(boots, [2.5, 97.5])
        na, nb = (n + (f" (decoded at T {t:g})" if t else "") for n, t in ((a.a, ta), (a.b, tb)))
        print(f"{box} box, {len(d)} faces: {na} {np.mean([ea[k] for k in keys]):.3f} %, {nb} "
              f"{np.mean([eb[k] for k in keys]):.3f} %, B - A per face {d.mean():+.3f} "
              f"(95 % interval {lo:+.3f} to {hi:+.3f})", flush=True)
    for name in dict.fromkeys((a.a, a.b)):  # confidence does not depend on the decoding
        on, off = confidences(name, recs[::3])
        print(f"{name} confidence: {len(on)} labelled faces min {on.min():.3f}, median {np.median(on):.3f}; "
              f"{len(off)} moved boxes median {np.median(off):.3f}, {100 * np.mean(off >= 0.8):.1f} % at 0.8 or more",
              flush=True)


if __name__ == "__main__":
    main()
