"""Face detectors, picked by name. Each returns [Detection(box (x0, y0, x1, y1), score, marks), ...] in
image pixels: `marks` are the six face points of the short-range model (else None).

"mediapipe": BlazeFace through MediaPipe's Tasks API, with the model files shipped in weights/
(mediapipe 1.x wheels carry none and we never download): the short-range model (faces that fill a
fair part of the picture: selfies, webcams, portraits; ~2-3 ms per image on one core) and the
full-range one (small and distant faces; ~6-9 ms more) together. "mediapipe-short" and "mediapipe-full"
run one of them. Both models see the whole picture at 128 or 192 px, so a panorama is also looked at
in square tiles (`detect`), and a crowd's faces in tiles of a photo on request (`small_face_sides`,
`detect_small`: the Landmarker does so for photos, not for video frames).
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
import weakref
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fkd.calibration import load_calibration
from fkd.geometry import box_iou, box_side
from fkd.weights import WEIGHTS_DIR, WeightsError

BLAZEFACE = WEIGHTS_DIR / "face_detection_short_range.tflite"
BLAZEFACE_FULL = WEIGHTS_DIR / "face_detection_full_range_sparse.tflite"
FULL_SCORE_RATIO = 0.6  # the full-range model's threshold, as a share of the short-range one's
SAME_FACE_IOU = 0.3     # a full-range box overlapping a short-range one this much is the same face
WIDE = 2.5              # a picture this many times wider than tall (or taller than wide) is also looked
                        # at in square tiles: a 4375×1336 panorama of 9 faces gave 2 without, 9 with
                        # (2.5: cinema frames, 2.39:1, stay one detector run)
MIN_TILE, MAX_TILES = 64, 12  # no tiles for strips thinner than this; at most this many along a side
SMALL_TILE, MAX_SMALL_TILES = 256, 100  # detect_small: tiles down to this side, at most this many in all
CLOSE_FACE = 0.4        # of the picture's short side: a short-range face this large makes `detect_fast` skip
                        # the full-range model (a webcam's face; what it would add is far behind it)


class Detection(NamedTuple):
    """A face found: its box (x0, y0, x1, y1) and score (0-1), and where the detector gives them its six
    face points (6, 2): the eyes (the image's left one first), the nose tip, the mouth, the ears."""
    box: np.ndarray
    score: float
    marks: np.ndarray | None = None


class FaceDetector:
    """Base class: `detect(rgb uint8 (H, W, 3)) -> list[Detection]` (box float32 (4,), score float, marks)."""

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        raise NotImplementedError

    def small_face_sides(self, w: int, h: int) -> list[int]:
        """For faces that are small in a large picture (a group photo), the sides of the square tiles
        that `detect_small` can look at, coarse to fine; none by default."""
        return []

    def detect_small(self, rgb: np.ndarray, side: int, found: list[Detection]) -> list[Detection]:
        """Faces in tiles of `side` (one of `small_face_sides`) that are not among `found`."""
        return []

    def detect_near(self, rgb: np.ndarray) -> list[Detection]:
        """Only faces that fill a fair part of the picture, as fast as the detector can: for second
        looks at the same image (turned copies), where the slower full-range model would add up."""
        return self.detect(rgb)

    def detect_fast(self, rgb: np.ndarray) -> list[Detection]:
        """The faces of a video frame: `detect`, or less where the detector can spare time without
        missing the faces that matter there (the close ones)."""
        return self.detect(rgb)

    def close(self) -> None:
        pass


class MediaPipeDetector(FaceDetector):
    def __init__(self, model_path: str | Path = BLAZEFACE, min_score: float = 0.5, marks: bool = True):
        """marks: give each face's six points (the map from them to the training crop is fitted on the
        short-range model's: the full-range model's detectors pass False)."""
        self.marks = marks
        model_path = Path(model_path)
        if not model_path.exists():
            raise WeightsError(f"{model_path}: face detector model not found (it ships in the repository's weights/)")
        os.environ.setdefault("GLOG_minloglevel", "2")  # keep MediaPipe's C++ logging quiet
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        opts = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=str(model_path)),
                                          min_detection_confidence=min_score)
        try:
            with quiet_stderr():  # LiteRT prints a dozen INFO lines on start that no env var silences
                self._det = vision.FaceDetector.create_from_options(opts)
                self._det.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8)))
        except (RuntimeError, ValueError) as e:
            raise WeightsError(f"{model_path}: cannot load the face detector ({e})") from None
        self._lock = threading.Lock()  # one graph per detector: serialise calls from app threads
        # mediapipe 1.x prints tracebacks at exit if a detector is still open when its thread pool
        # stops; threading's exit hooks run before that pool's (ours is registered later: LIFO).
        self._finalizer = weakref.finalize(self, _close_quietly, self._det)
        threading._register_atexit(self._finalizer)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        import mediapipe as mp

        h, w = rgb.shape[:2]
        img = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb, dtype=np.uint8))
        with self._lock:
            res = self._det.detect(img)
        out = []
        for d in res.detections:
            b = d.bounding_box
            box = np.array([b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height], np.float32)
            box = np.clip(box, 0, [w, h, w, h]).astype(np.float32)
            marks = np.array([(k.x * w, k.y * h) for k in d.keypoints], np.float32) \
                if self.marks and len(d.keypoints) == 6 else None
            if box[2] - box[0] >= 4 and box[3] - box[1] >= 4:
                out.append(Detection(box, float(d.categories[0].score), marks))
        return sorted(out, key=lambda d: d.box[0])  # left to right: stable face order

    def close(self) -> None:
        self._finalizer()


@contextlib.contextmanager
def quiet_stderr():
    """Silence the C++ side's stderr (file descriptor 2) for a moment; Python errors still raise."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _close_quietly(det) -> None:
    try:
        with quiet_stderr():
            det.close()
        det._handle = None  # so its __del__ does not close it a second time at interpreter exit
    except Exception:
        pass


class MediaPipeShortAndFull(FaceDetector):
    """Short-range BlazeFace (fast, for faces that fill the picture) and the full-range model (small
    or distant faces, ~6-9 ms more on one AVX2 core) together: the full-range model adds the faces
    that no short-range box covers. It used to run only when the short-range model found nothing,
    so a group photo with one large face lost its small ones (dlib's 9 example photos: 19 of 43
    faces found, 43 with both; bench/detection.py). Full-range boxes are larger: they are mapped to
    the short-range convention (a fit on the training faces, `full_to_short` in
    weights/calibration.json), so one calibration to the training crop serves both. The full-range
    model runs at FULL_SCORE_RATIO × min_score: it scores small and grey faces lower, and the
    landmark model's confidence is what drops false detections (`Landmarker.detect` keeps only boxes
    at min_score for the models that have none)."""

    def __init__(self, min_score: float = 0.5):
        self.short = MediaPipeDetector(BLAZEFACE, min_score)
        self._full, self._min_score = None, min_score
        self.full_to_short = load_calibration("full_to_short")

    @property
    def full(self) -> MediaPipeDetector:
        if self._full is None:
            self._full = MediaPipeDetector(BLAZEFACE_FULL, FULL_SCORE_RATIO * self._min_score, marks=False)
        return self._full

    def detect(self, rgb: np.ndarray, short: list | None = None) -> list[Detection]:
        """short: the short-range model's detections on `rgb`, when they are known already."""
        found = self._both(rgb, short)
        h, w = rgb.shape[:2]
        n, side = max(h, w), min(h, w)
        if n > WIDE * side and side >= MIN_TILE:  # a panorama: the models see it at 128 / 192 px, faces vanish
            for o in _tile_starts(n, side):
                _add(found, self._in_tile(rgb, o, 0, side, self._both) if w > h else
                     self._in_tile(rgb, 0, o, side, self._both))
        return sorted(found, key=lambda d: d.box[0])

    def small_face_sides(self, w: int, h: int) -> list[int]:
        """Half the short side, a quarter, ... down to SMALL_TILE px, while all the levels' tiles
        (overlapping by half) stay within MAX_SMALL_TILES (~8 ms each on one AVX2 core). Both models
        see the whole picture at 128 or 192 px, where a crowd's faces vanish."""
        sides, side, used = [], min(w, h) // 2, 0
        while side >= SMALL_TILE:
            used += len(_tile_starts(w, side, None)) * len(_tile_starts(h, side, None))
            if used > MAX_SMALL_TILES:
                break
            sides.append(side)
            side //= 2
        return sides

    def detect_small(self, rgb: np.ndarray, side: int, found: list[Detection]) -> list[Detection]:
        """The full-range model on tiles of `side` overlapping by half: the boxes that neither overlap
        a face of `found` nor are centred in one (a part of a face seen close, an eye)."""
        h, w = rgb.shape[:2]
        seen = list(found)
        for y in _tile_starts(h, side, None):
            for x in _tile_starts(w, side, None):
                # mapped to the short-range convention after the edge test (a clipped box stays on the edge)
                boxes = self._to_short(self._in_tile(rgb, x, y, side, self._small))
                _add(seen, [d for d in boxes if not any(_holds(f.box, d.box) for f in found)])
        return sorted(seen[len(found):], key=lambda d: d.box[0])

    def _small(self, tile: np.ndarray) -> list[Detection]:
        """The full-range model's boxes (its own, unmapped) that are small for the tile: the whole
        picture's pass finds the larger faces, and a tile may show a part of one as a face."""
        return [d for d in self.full.detect(tile) if box_side(d.box) <= tile.shape[0] / 2]

    @staticmethod
    def _in_tile(rgb: np.ndarray, x: int, y: int, side: int, run) -> list[Detection]:
        """What `run` finds in the square tile at (x, y), in the picture's pixels, without the faces
        the tile cuts at an inner edge: they are whole in the next tile (tiles overlap by half)."""
        h, w = rgb.shape[:2]
        out = []
        for b, s, marks in run(np.ascontiguousarray(rgb[y:y + side, x:x + side])):
            cut = (x > 0 and b[0] <= 1) or (y > 0 and b[1] <= 1) or (x + side < w and b[2] >= side - 1) \
                or (y + side < h and b[3] >= side - 1)
            if not cut:
                out.append(Detection(b + np.array([x, y, x, y], np.float32), s,
                                     None if marks is None else marks + np.array([x, y], np.float32)))
        return out

    def _both(self, rgb: np.ndarray, short: list | None = None) -> list[Detection]:
        """The short-range boxes (`short`, when known), then the full-range ones (mapped) that no
        short-range box covers."""
        found = self.short.detect(rgb) if short is None else list(short)
        _add(found, self._to_short(self.full.detect(rgb)))
        return found

    def _to_short(self, found: list[Detection]) -> list[Detection]:
        """Full-range boxes mapped to the short-range convention (`full_to_short`)."""
        return [Detection(self.full_to_short.apply(d.box), d.score) for d in found]

    def detect_near(self, rgb: np.ndarray) -> list[Detection]:
        return self.short.detect(rgb)

    def detect_fast(self, rgb: np.ndarray) -> list[Detection]:
        """`detect` without the full-range model where the short-range one found a face of CLOSE_FACE × the
        picture's short side or more: ~2.7 instead of ~9 ms for a 640×480 webcam frame; a face far
        behind a close one is then not looked for (1 frame in 195, bench/HISTORY.md)."""
        found = self.short.detect(rgb)
        if max((box_side(d.box) for d in found), default=0.0) >= CLOSE_FACE * min(rgb.shape[:2]):
            return found  # left to right, as the short-range model gives them
        return self.detect(rgb, found)

    def close(self) -> None:
        self.short.close()
        if self._full is not None:
            self._full.close()


def _add(found: list[Detection], more: list[Detection]) -> None:
    """Append the detections of `more` that no box in `found` (nor one added before them) covers."""
    for d in more:
        if all(box_iou(d.box, f.box) < SAME_FACE_IOU for f in found):
            found.append(d)


def _holds(box: np.ndarray, other: np.ndarray) -> bool:
    """Whether `other`'s centre lies inside `box`."""
    cx, cy = (other[0] + other[2]) / 2, (other[1] + other[3]) / 2
    return bool(box[0] <= cx <= box[2] and box[1] <= cy <= box[3])


def _tile_starts(n: int, side: int, most: int | None = MAX_TILES) -> list[int]:
    """Offsets of square tiles of `side` along a length `n` (> side), overlapping by half, the first at
    0 and the last at the end. Capped at `most` tiles, they overlap less (gaps past `most` sides)."""
    count = math.ceil(2 * (n - side) / side) + 1
    count = count if most is None else min(most, count)
    return sorted({round(i * (n - side) / (count - 1)) for i in range(count)})


DETECTORS = {"mediapipe": MediaPipeShortAndFull, "mediapipe-short": MediaPipeDetector,
             "mediapipe-full": lambda min_score=0.5: MediaPipeDetector(BLAZEFACE_FULL, min_score, marks=False)}


def make_detector(name: str = "mediapipe", **kw) -> FaceDetector:
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; expected one of {sorted(DETECTORS)}")
    return DETECTORS[name](**kw)
