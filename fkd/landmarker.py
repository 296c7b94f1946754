"""`Landmarker`: any image in, every face's box, score and keypoints out, in original-image pixels.

    lm = Landmarker()                                  # the default model, fkd.zoo.DEFAULT_MODEL
    for face in lm.predict("group.jpg"):               # MediaPipe finds the faces
        print(face.box, face.score, face.keypoints.shape)
    lm.predict(img, boxes=[(x0, y0, x1, y1)])          # a box drawn by a person: no detector

A photo's way through `predict`, one stage after the other, each passing arrays on:
1. find: the detector's boxes (or the given ones), mapped by the calibration to the training crop;
2. read: cut the crops, one model pass, points back to image pixels (`read`). The detector's six face
   points place the crops of its boxes (`marked_crops`); for other boxes, where the card names a
   locator (a small copy of the model), its pass on the box's crop places the model's crop (`locate`);
3. settle: a face whose points lie tilted past `level_above` gets a pass on a crop turned level, one
   whose points lie off the crop they were read on (a loose box) a pass on the crop of its points,
   keeping the mean of both where the two crops lie near (`settle`, at most `extra_passes` times);
4. mirror: the flip test averages in a pass on the mirrored crop of the faces the model doubts (`mirror`);
5. small faces: the detector's tiles of a large picture (a group photo), coarse to fine;
6. turned copies: where no face is sure, or one lies past `rolled_above`, the image turned by each of
   `turns` is searched too (a photo taken sideways);
then one face per place, in reading order. The thresholds sit in one frozen `Settings`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from fkd.calibration import IDENTITY, load_calibration, load_mark_calibration
from fkd.detect import Detection
from fkd.geometry import (CropSpec, apply_affine, box_side, compose, crop_matrix, eye_roll, face_side, invert_affine,
                          landmark_box, level_turn, mirror_points, to_gray, turned_image, upright_crop_matrix, warp)
from fkd.io import ImageError, ImageLike, load_image_sized
from fkd.layouts import LAYOUTS
from fkd.weights import WeightsError, card_config, load_model, resolve
from fkd.zoo import DEFAULT_MODEL, MODELS

FlipTest = bool | Literal["auto"]  # True: always mirror too; False: one pass; "auto": below flip_below

__all__ = ["Face", "Landmarker", "Settings", "WeightsError", "ImageError", "MODELS", "DEFAULT_MODEL"]


@dataclass(frozen=True)
class Settings:
    """When a face gets another pass, and which faces are kept. bench/HISTORY.md tells how each
    value was found; bench/accuracy.py and bench/boxes.py measure them."""
    min_confidence: float = 0.8          # model confidence (0-1): detector faces below it are dropped
    level_above: float = 10.0            # degrees of eye-line tilt: a face tilted more gets a levelled pass
    recrop_above: float | None = 0.065   # of the input side: a crop more than this far from its points' crop
                                         # gets a pass on theirs (None: never)
    blend_within: float = 0.1            # of the input side: a re-crop no farther keeps the mean of both passes
                                         # (0: the second pass alone)
    follow_recrop_above: float | None = 0.05  # `recrop_above` for a face followed in a video (`track`), whose
                                         # crop lags its motion: re-cropped sooner, only the second pass counts
    extra_passes: int = 2                # levelled or re-cropped passes per face, at most
    locate: bool = True                  # the card's locator places the crop of a face box (False: the box's own crop)
    marks: bool = True                   # the detector's face points place the crops of its boxes (False: as `locate`)
    search_below: float = 0.97           # confidence: unless a face scores this, turned copies are searched
    rolled_above: float = 45.0           # degrees of tilt: a face lying this far makes them searched too
    turns: tuple[float, ...] = (45.0, -45.0, 90.0, -90.0, 135.0, -135.0, 180.0)  # degrees: the copies
    turned_side: int = 320               # pixels: a turned copy's longer side, as the detector sees it
    turned_sure: float = 0.95            # confidence a face found only in a turned copy needs
    small_sure: float = 0.9              # confidence a face found only in the small-face tiles needs
    flip_below: float | None = None      # confidence: flip_test="auto" mirrors below it (None: the card's)


FLIP_BELOW = 0.996  # confidence: flip_below for cards that do not give one


@dataclass
class Face:
    box: np.ndarray          # (4,) x0, y0, x1, y1: the detector's or the given box
    score: float             # detector confidence (1.0 for a given box)
    keypoints: np.ndarray    # (N, 2) 0-based pixels of the original image
    confidence: float        # the landmark model's own confidence in [0, 1] (1.0 if it has none)
    turn: float = 0.0        # degrees: found by the detector in the image turned this much (0: as given)

    def to_dict(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box], "score": round(self.score, 4),
                "confidence": round(self.confidence, 4), "turn": self.turn,
                "keypoints": [[round(float(x), 2), round(float(y), 2)] for x, y in self.keypoints]}


@dataclass(frozen=True)
class Reading:
    """Faces being read, one row each: the stages take one and give a new one."""
    mats: np.ndarray         # (B, 2, 3) crop matrices, image -> model input
    x: np.ndarray            # (B, C, H, W) float32 model inputs in [-0.5, 0.5], cut by mats
    points: np.ndarray       # (B, N, 2) float32 image pixels, from the last pass on x
    conf: np.ndarray         # (B,) the model's confidence in that pass (mirroring leaves it)

    def __len__(self) -> int:
        return len(self.mats)

    def rows(self, idx) -> "Reading":
        """The faces `idx` alone."""
        return Reading(self.mats[idx], self.x[idx], self.points[idx], self.conf[idx])


class Landmarker:
    """Loads a landmark model (weights/<model>.safetensors + card) and, lazily, the face detector."""

    def __init__(self, model: str | Path = DEFAULT_MODEL, detector="mediapipe", device: str = "cpu",
                 flip_test: FlipTest = "auto", min_score: float = 0.5, backend: str = "auto", threads: int | None = None,
                 upright: bool = True, small_faces: bool = True, settings: Settings = Settings()):
        """detector: a name for fkd.detect.make_detector, or a detector object (`detect(rgb)` -> boxes).
        backend: "openvino" (bfloat16 where the CPU has it), "onnx" (ONNX Runtime), "torch", or
        "auto": on CPU, openvino where the CPU computes in bfloat16, else onnx when installed, else
        torch. threads: CPU threads for OpenVINO / ONNX Runtime (None = all cores).
        flip_test: True averages every face with a pass on its mirror; "auto" only the faces whose
        first pass is less sure than `flip_below` (about half); False: one pass.
        upright: detector boxes get the levelled and re-cropped passes and photos the search of
        turned copies (see Settings); landmark boxes (box_kind="landmarks") always get one pass.
        small_faces: the detector also looks at large pictures in tiles for faces small in them
        (a group photo), and behind a close face; video loops skip both (fkd.stream)."""
        self.cfg, self.card = card_config(model)  # the torch model loads only where it runs (`model`)
        self._weights, self._model = resolve(model), None
        self.layout = LAYOUTS[self.card["layout"]]
        self.crop = CropSpec(**self.card["crop"])
        self.input_size = (self.cfg.input_w, self.cfg.input_h)
        self.settings = settings
        self.flip_below = float(settings.flip_below if settings.flip_below is not None
                                else self.card.get("flip_below", FLIP_BELOW))
        # input pixels added to every pass's points, in the unmirrored crop (see fkd.recipes.training_face_stats)
        self.label_shift = np.asarray(self.card.get("label_shift", (0.0, 0.0)), np.float32)
        self.calibration = load_calibration("imm58" if self.card["layout"] in ("imm58", "nose") else "ibug68")
        self.mark_calibration = load_mark_calibration(self.card["layout"]) if settings.marks and self.layout.eyes else None
        self.device, self.flip_test = device, _checked_flip(flip_test)
        self.min_score, self.upright, self.small_faces = min_score, upright, small_faces
        self._detector = None if isinstance(detector, str) else detector
        self._detector_name = detector
        self.passes = 0  # faces read by the model so far (a mirrored or second pass counts again)
        from fkd.runtime import OnnxRunner, OpenVinoRunner, model_graph, pick_backend
        self.backend = pick_backend(backend, device)
        runner = {"openvino": OpenVinoRunner, "onnx": OnnxRunner}.get(self.backend)
        self._runner = runner(model_graph(self._weights, lambda: self.model), threads) if runner else None
        if self._runner is None:
            self.model  # noqa: B018  (load now: damaged weights fail here, not at the first photo)
        self.locator = None  # the card's locator: beside the model's weights, else found by name
        if self.card.get("locator") and settings.locate and self.layout.eyes:
            beside = self._weights.with_name(self.card["locator"])
            self.locator = Landmarker(beside if beside.with_suffix(".json").exists() else self.card["locator"],
                                      detector=None, device=device, backend=backend, threads=threads, settings=settings)

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def min_confidence(self) -> float:
        return self.settings.min_confidence

    @property
    def has_confidence(self) -> bool:
        """Whether the model scores its own answers (the grid models); the ResNet18 baseline says 1.0."""
        return self.cfg.arch == "pipnet"

    @property
    def model(self):
        """The torch model (needs torch): for backend="torch", and for looking inside the network."""
        if self._model is None:
            import torch
            self._model = load_model(self._weights, self.device)[0].to(memory_format=torch.channels_last)
        return self._model

    @property
    def detector(self):
        if self._detector is None:
            from fkd.detect import make_detector
            self._detector = make_detector(self._detector_name, min_score=self.min_score)
        return self._detector

    # -- the public calls ---------------------------------------------------------------------
    def predict(self, image: ImageLike, boxes=None, box_kind: str = "face", flip_test: FlipTest | None = None,
                min_confidence: float | None = None, search: bool | None = None,
                turns: Sequence[float] | None = None, small_faces: bool | None = None) -> list[Face]:
        """Every face in `image` (or one per given box), in original-image pixels. [] = no face.
        boxes: (x0, y0, x1, y1) each, or the `Detection`s of `detect` (their face points place the crops).
        flip_test, min_confidence: for this call (None = the Landmarker's; given boxes are kept whatever
        the model thinks unless min_confidence is given). search: look in turned copies when no face
        is sure (None = as `upright`); turns: which copies, in degrees (None = all of Settings.turns).
        small_faces: look in tiles of large pictures and behind close faces too (None = the Landmarker's setting)."""
        rgb, (W, H) = load_image_sized(image)
        scale = W / rgb.shape[1]  # huge photos are worked on downscaled; results go back to full size
        if boxes is not None:
            found = [check_detection(b, W, H) for b in boxes]
            found = [Detection(d.box / scale, d.score, None if d.marks is None else d.marks / scale) for d in found]
            kind = "landmarks" if box_kind == "landmarks" else "face"
            faces = self.faces_in_boxes(rgb, found, kind, flip_test, min_confidence or 0.0)
        else:
            low = self.min_confidence if min_confidence is None else min_confidence
            small_faces = self.small_faces if small_faces is None else small_faces
            faces = self.faces_in_boxes(rgb, self.detect(rgb, small_faces), "face", flip_test, low)
            if small_faces and self.has_confidence:
                faces += self.faces_in_tiles(rgb, faces, flip_test, low)
            faces = _distinct(faces)
            if (self.upright if search is None else search) and self.wants_search(faces):
                turns = self.settings.turns if turns is None else turns
                faces = _distinct(faces + self.faces_in_turned_copies(rgb, flip_test, turns))
        return [replace(f, box=(f.box * scale).astype(np.float32), keypoints=f.keypoints * scale) for f in faces]

    def predict_boxes(self, rgb: np.ndarray, boxes: list[np.ndarray], box_kind: str = "face",
                      flip_test: FlipTest | None = None, frame=None, min_confidence: float = 0.0, locate: bool = True,
                      marks: Sequence[np.ndarray | None] | None = None):
        """Keypoints for boxes on a loaded RGB image: (list of (N, 2), list of confidences).
        frame: the boxes are in a turned copy of the image (the 2×3 map image -> copy). Crops below
        `min_confidence` (the caller drops them) get neither a second pass nor the flip test.
        marks: the detector's face points of each box (or None): they place its crop (`marked_crops`) where
        the card's layout has a fitted map and the boxes are upright face boxes of this image (not `frame`'s);
        a face the model believes less than `min_confidence` there goes on as a box without them.
        locate: the card's locator places the crops of the other face boxes (`locate`); a box it believes
        less than `min_confidence` keeps the locator's points and confidence, and no pass of the model."""
        flip = self._flip(flip_test)
        upright = box_kind == "face" and self.upright and bool(self.layout.eyes)  # levelled / re-cropped passes
        points, conf = [None] * len(boxes), [0.0] * len(boxes)

        def finish_into(where: list[int], reading: Reading, levelled=None) -> None:
            """The first reading of the boxes `where` settled and mirrored, put in their places."""
            for i, p, c in zip(where, *self.finish(rgb, reading, flip, min_confidence, upright, levelled)):
                points[i], conf[i] = p, c

        rest = list(range(len(boxes)))  # the boxes not read yet
        if marks is not None and frame is None and self.mark_calibration is not None and upright:
            marked = [i for i in rest if marks[i] is not None]
            if marked:
                mats, levelled = self.marked_crops([boxes[i] for i in marked], [marks[i] for i in marked])
                reading = self.read(rgb, mats)
                sure = np.flatnonzero(reading.conf >= min_confidence)
                finish_into([marked[j] for j in sure], reading.rows(sure), [levelled[j] for j in sure])
                read = {marked[j] for j in sure}
                rest = [i for i in rest if i not in read]
        if not rest:
            return points, conf
        rest_boxes = [boxes[i] for i in rest]
        if upright and locate and self.locator is not None:
            mats, located = self.locate(rgb, rest_boxes, frame)
            for j, i in enumerate(rest):  # kept where the model gets no pass: the locator does not believe the box
                points[i], conf[i] = located.points[j], float(located.conf[j])
            sure = np.flatnonzero(located.conf >= min_confidence)
        else:
            mats, sure = self.box_crops(rest_boxes, box_kind, frame), np.arange(len(rest))
        if len(sure):
            finish_into([rest[j] for j in sure], self.read(rgb, mats[sure]))
        return points, conf

    def finish(self, rgb: np.ndarray, reading: Reading, flip: FlipTest, min_confidence: float, upright: bool,
               levelled: Sequence[float] | None = None):
        """A first reading settled (if upright; `levelled` as in `settle`) and mirrored: (list of points,
        list of confidences)."""
        reading = self.settle(rgb, reading, min_confidence, levelled) if upright else reading
        reading = self.mirror(reading, self.to_mirror(reading.conf, flip, min_confidence))
        return list(reading.points), [float(c) for c in reading.conf]

    def track(self, image: ImageLike, faces: Sequence[Face], flip_test: FlipTest | None = None) -> list[Face]:
        """The faces of a video's previous frame, found again in this one without the detector: each
        cropped from its last points (`crop_of`), re-cropped once if it moved off that crop. A face
        the model now believes less than min_confidence is left out (the caller detects again); the
        box moves and scales with the points, so a drawing does not jump."""
        flip = self._flip(flip_test)
        if not faces:
            return []
        rgb, (W, H) = load_image_sized(image)
        scale = W / rgb.shape[1]
        prev = [np.asarray(f.keypoints, np.float64) / scale for f in faces]
        reading = self.read(rgb, np.stack([self.crop_of(p) for p in prev]))
        low = self.min_confidence
        again = {i: rc[0] for i in range(len(reading))
                 if (rc := self.recrop(reading.points[i], reading.conf[i], reading.mats[i], low, follow=True)) is not None}
        reading = self.pass_again(rgb, reading, again)
        reading = self.mirror(reading, self.to_mirror(reading.conf, flip, low))
        out = []
        for f, p0, p, c in zip(faces, prev, reading.points, reading.conf):
            if c < low:
                continue
            c0, c1 = p0.mean(0), p.mean(0)
            k = box_side(landmark_box(p)) / max(box_side(landmark_box(p0)), 1e-6)
            box = ((np.asarray(f.box, np.float64) / scale).reshape(2, 2) - c0) * k + c1
            out.append(replace(f, box=(box.reshape(4) * scale).astype(np.float32),
                               keypoints=(p * scale).astype(np.float32), confidence=float(c)))
        return _distinct(out)

    def detect(self, rgb: np.ndarray, small_faces: bool = True) -> list[Detection]:
        """The detector's faces; without small_faces, those of its `detect_fast` (a video frame's: not the
        faces far behind a close one). For a model without a confidence (nothing checks the boxes after),
        only those scored at least `min_score`: the full-range detector looks down to 0.6 × min_score.
        A detector of one's own may give (box, score) pairs."""
        found = [Detection(*d) for d in (self.detector.detect(rgb) if small_faces else self.detector.detect_fast(rgb))]
        return found if self.has_confidence else [d for d in found if d.score >= self.min_score]

    def wants_search(self, faces: Sequence[Face]) -> bool:
        """Whether `predict` also looks in turned copies of a picture whose upright pass found `faces`:
        none scores `search_below` or more, or one lies tilted past `rolled_above`."""
        s, eyes = self.settings, self.layout.eyes
        return (_best(faces) < s.search_below
                or (bool(eyes) and any(abs(eye_roll(f.keypoints, eyes)) > s.rolled_above for f in faces)))

    # -- where faces come from ----------------------------------------------------------------
    def faces_in_boxes(self, rgb: np.ndarray, found, kind: str, flip_test, min_confidence: float,
                       frame=None, locate: bool = True) -> list[Face]:
        """Faces for the detector's finds (`Detection`s, or a detector of one's own's (box, score) pairs);
        those the model believes less than `min_confidence` are dropped. frame: the boxes are in a turned
        copy of `rgb` (2×3 map rgb -> copy); the Face gets their outline in rgb. locate: as in `predict_boxes`."""
        found = [Detection(*d) for d in found]
        if not found:
            return []
        pts, conf = self.predict_boxes(rgb, [d.box for d in found], kind, flip_test, frame, min_confidence, locate,
                                       [d.marks for d in found])
        boxes = [d.box for d in found]
        if frame is not None:
            back = invert_affine(frame)
            boxes = [landmark_box(apply_affine(back, corners(b))) for b in boxes]
        return [Face(box=np.asarray(b, np.float32), score=d.score, keypoints=p, confidence=c)
                for b, d, p, c in zip(boxes, found, pts, conf) if c >= min_confidence]

    def faces_in_tiles(self, rgb: np.ndarray, faces: list[Face], flip_test, low: float) -> list[Face]:
        """Faces small in a large picture beside `faces`, from the detector's tiles, coarse to fine: a
        level closer only while the last one gave faces. A face from a tile must be `small_sure`, read
        on its box's own crop (no locator: among a crowd's many boxes it would centre more on textures)."""
        out, seen = [], [Detection(f.box, f.score) for f in faces]
        for side in self.detector.small_face_sides(rgb.shape[1], rgb.shape[0]):
            new = self.faces_in_boxes(rgb, self.detector.detect_small(rgb, side, seen), "face", flip_test,
                                      max(low, self.settings.small_sure), locate=False)
            out, seen = out + new, seen + [Detection(f.box, f.score) for f in new]
            if not new:
                break
        return out

    def faces_in_turned_copies(self, rgb: np.ndarray, flip_test, turns: Sequence[float]) -> list[Face]:
        """The faces the detector finds in small copies of the image turned by each of `turns` (a head
        lying down shows only there); the model crops them from the full image. They must be `turned_sure`."""
        k = min(1.0, self.settings.turned_side / max(rgb.shape[:2]))
        small = cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else rgb
        k = small.shape[1] / rgb.shape[1]
        shrink = np.array([[k, 0, (k - 1) / 2], [0, k, (k - 1) / 2]])  # pixel centres stay on integers
        out = []
        for degrees in turns:
            turned, A = turned_image(small, degrees)
            found = self.faces_in_boxes(rgb, self.detector.detect_near(turned), "face", flip_test,
                                        self.settings.turned_sure, frame=compose(A, shrink))
            out += [replace(f, turn=degrees) for f in found]
        return out

    # -- the stages of a pass -----------------------------------------------------------------
    def box_crops(self, boxes, box_kind: str = "face", frame=None) -> np.ndarray:
        """(B, 2, 3) crops for boxes: a face box through the calibration, a landmark box as it is.
        frame: the boxes are in a turned copy of the image; this is the 2×3 map image -> copy."""
        cal = self.calibration if box_kind == "face" else IDENTITY
        mats = [crop_matrix(cal.apply(np.asarray(b, np.float32)), self.crop, self.input_size) for b in boxes]
        if frame is not None:
            mats = [compose(M, frame) for M in mats]
        return np.stack(mats) if mats else np.zeros((0, 2, 3))

    def model_inputs(self, rgb: np.ndarray, boxes, box_kind: str = "face", frame=None):
        """(crop matrices, model inputs (B, C, H, W) float32 in [-0.5, 0.5]) for boxes."""
        mats = self.box_crops(boxes, box_kind, frame)
        return mats, self.cut(rgb, mats)

    def cut(self, rgb: np.ndarray, mats) -> np.ndarray:
        """The model inputs (B, C, H, W) cut by `mats`, float32 in [-0.5, 0.5]."""
        patches = [warp(rgb, M, self.input_size) for M in mats]
        x = np.stack([to_gray(p)[None] if self.cfg.in_channels == 1 else p.transpose(2, 0, 1) for p in patches])
        x = x.astype(np.float32)
        x /= 255
        x -= 0.5
        return x

    def read(self, rgb: np.ndarray, mats) -> Reading:
        """Cut the crops and pass them once."""
        return self.pass_on(self.cut(rgb, mats), mats)

    def pass_on(self, x: np.ndarray, mats) -> Reading:
        """One pass on inputs x cut by `mats`: points in image pixels, with the card's label_shift."""
        pred, conf = self.run(x)
        points = np.stack([self.to_image(M, p) for M, p in zip(mats, pred)])
        return Reading(np.asarray(mats), x, points, np.asarray(conf, np.float64))

    def marked_crops(self, boxes, marks) -> tuple[np.ndarray, list[float]]:
        """(B, 2, 3) crops for detector boxes placed by the detector's six face points: on the landmark box
        that `mark_calibration` gives for them, turned level when their eyes lie tilted past `level_above`;
        and the tilt each crop was levelled for (degrees)."""
        mats, levelled = [], []
        for b, m in zip(boxes, marks):
            to_level, degrees = level_turn(m, (0, 1), self.settings.level_above)
            box = self.mark_calibration.apply(apply_affine(to_level, m), box_side(b))
            mats.append(compose(crop_matrix(box, self.crop, self.input_size), to_level))
            levelled.append(degrees)
        return np.stack(mats), levelled

    def locate(self, rgb: np.ndarray, boxes, frame=None) -> tuple[np.ndarray, Reading]:
        """(B, 2, 3) crops for face boxes, on the landmark box of the points the locator reads in each box
        and upright as the box is (in the turned copy `frame` maps to, if any), and the locator's reading.
        Not turned by the points' tilt: the locator's is rougher than the model's (bench/HISTORY.md), and
        a crop turned by a wrong angle is one the model cannot read; `settle` levels by the model's points."""
        located = self.locator.read(rgb, self.locator.box_crops(boxes, "face", frame))
        to_box = np.eye(2, 3) if frame is None else frame  # image -> the frame the box is upright in
        mats = [compose(crop_matrix(landmark_box(apply_affine(to_box, p)), self.crop, self.input_size), to_box)
                for p in located.points]
        return np.stack(mats), located

    def settle(self, rgb: np.ndarray, reading: Reading, min_confidence: float = 0.0,
               levelled: Sequence[float] | None = None) -> Reading:
        """Up to `extra_passes` more passes for faces that lie tilted past `level_above` of the tilt their
        crop was levelled for (`levelled`, degrees; None: upright crops) on a crop turned level, or off
        their crop (on the crop of their points, blended with the pass before where it lies near: `recrop`)."""
        eyes = self.layout.eyes
        levelled = [0.0] * len(reading) if levelled is None else list(levelled)  # each face's last crop's tilt
        for _ in range(self.settings.extra_passes):
            again, blend = {}, []  # face index -> the crop of its next pass; the faces whose two passes count
            for i, p in enumerate(reading.points):
                if abs(_wrap(eye_roll(p, eyes) - levelled[i])) > self.settings.level_above:
                    again[i] = upright_crop_matrix(p, eyes, self.crop, self.input_size)
                    levelled[i] = eye_roll(p, eyes)
                elif (rc := self.recrop(p, reading.conf[i], reading.mats[i], min_confidence)) is not None:
                    again[i] = rc[0]
                    if rc[1]:
                        blend.append(i)
            if not again:
                break
            reading = self.pass_again(rgb, reading, again, blend)
        return reading

    def recrop(self, points: np.ndarray, confidence: float, mat: np.ndarray, min_confidence: float,
               follow: bool = False) -> tuple[np.ndarray, bool] | None:
        """The crop of `points` when it lies more than `recrop_above` (`follow_recrop_above` for a face
        followed) from `mat`, the crop they were read on, and whether both passes count: it lies within
        `blend_within`, so the first pass read the face nearly as well (never for a face followed). None
        when it lies nearer, below `min_confidence` (crops the caller drops) and when the threshold is None."""
        s = self.settings
        above = s.follow_recrop_above if follow else s.recrop_above
        if above is None or confidence < min_confidence:
            return None
        M = self.crop_of(points)
        shift = crop_shift(mat, M, self.input_size)
        return (M, not follow and shift <= s.blend_within) if shift > above else None

    def pass_again(self, rgb: np.ndarray, reading: Reading, again: dict[int, np.ndarray],
                   blend: Sequence[int] = ()) -> Reading:
        """The faces in `again` (index -> their new crop) passed on those crops, in one batch. The faces
        in `blend` (re-crops near their first crop, `recrop`) get the mean of their points before and
        after: two readings of one face on two crops, more accurate than the second alone (a third pass
        blended so weighs the three 1/4, 1/4, 1/2)."""
        if not again:
            return reading
        idx = list(again)
        new = self.read(rgb, np.stack(list(again.values())))
        mats, x, points, conf = (a.copy() for a in (reading.mats, reading.x, reading.points, reading.conf))
        mats[idx], x[idx], points[idx], conf[idx] = new.mats, new.x, new.points, new.conf
        for i in blend:
            points[i] = (points[i] + reading.points[i]) / 2
        return Reading(mats, x, points, conf)

    def to_mirror(self, conf, flip: FlipTest, min_confidence: float = 0.0) -> np.ndarray:
        """Indices of the faces the flip test mirrors: all (True), none (False), or the doubted ("auto"),
        leaving out those below `min_confidence`, which the caller drops."""
        conf = np.asarray(conf)
        mirror = conf < self.flip_below if flip == "auto" else np.full(len(conf), bool(flip))
        return np.flatnonzero(mirror & (conf >= min_confidence))

    def mirror(self, reading: Reading, idx) -> Reading:
        """The flip test on faces `idx`: their points averaged with a pass on the mirrored crop. The
        confidence stays the first pass's: the thresholds were measured on it (bench/HISTORY.md)."""
        if not len(idx):
            return reading
        pf, _ = self.run(np.ascontiguousarray(reading.x[idx, ..., ::-1]))
        points = reading.points.copy()
        for i, p in zip(idx, mirror_points(pf, self.cfg.input_w, self.layout.flip)):
            points[i] = (points[i] + self.to_image(reading.mats[i], p)) / 2
        return replace(reading, points=points)

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model: inputs (B, C, H, W) -> points (B, N, 2) in input pixels, confidence (B,), numpy."""
        self.passes += len(x)
        if self._runner is not None:
            return self._runner(np.asarray(x, np.float32))
        import torch
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
            t = t.contiguous(memory_format=torch.channels_last)
            if self.has_confidence:
                pred, conf = self.model.predict_with_confidence(t)
            else:
                pred, conf = self.model(t)[0], torch.ones(len(t))
            return pred.float().cpu().numpy(), conf.float().cpu().numpy()

    def to_image(self, M: np.ndarray, points: np.ndarray) -> np.ndarray:
        """One pass's points (input pixels of the crop made by M, unmirrored) in image pixels, with the
        card's label_shift added in the crop's frame."""
        return apply_affine(invert_affine(M), points + self.label_shift)

    # -- crops of known faces -----------------------------------------------------------------
    def crop_of(self, points: np.ndarray) -> np.ndarray:
        """The crop (2×3, image -> model input) of a face whose points are known: on its landmark box
        as the models were trained, turned level when it lies tilted past `level_above`. Needs two
        points or more: one point (the nose) has no landmark box."""
        eyes = self.layout.eyes
        if eyes and abs(eye_roll(points, eyes)) > self.settings.level_above:
            return upright_crop_matrix(points, eyes, self.crop, self.input_size)
        return crop_matrix(landmark_box(points), self.crop, self.input_size)

    def input_of(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The model's input (1, C, H, W) for a face found in `rgb` (its pixels): `crop_of` its points,
        or for a one-point layout (the nose) the calibrated crop of its box."""
        if len(face.keypoints) < 2:
            return self.model_inputs(rgb, [face.box])[1]
        return self.cut(rgb, [self.crop_of(np.asarray(face.keypoints, np.float64))])

    def _flip(self, flip_test: FlipTest | None) -> FlipTest:
        """The flip test for a call: its own setting, else the Landmarker's; never for a layout without mirror pairs."""
        return (self.flip_test if flip_test is None else _checked_flip(flip_test)) if len(self.layout.flip) > 1 else False

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
        if self.locator is not None:
            self.locator.close()


def _checked_flip(flip_test) -> FlipTest:
    if flip_test not in (True, False, "auto"):
        raise ValueError(f"flip_test must be True, False or 'auto', not {flip_test!r}")
    return flip_test


def crop_shift(M: np.ndarray, M2: np.ndarray, size: tuple[int, int]) -> float:
    """How far crop M (2×3, image -> input of `size`) lies from crop M2: the largest move of an input
    corner between them, as a share of the input's side."""
    w, h = size
    corners_ = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
    return float(np.abs(apply_affine(compose(M2, invert_affine(M)), corners_) - corners_).max() / max(w, h))


def _best(faces: Sequence[Face]) -> float:
    return max((f.confidence for f in faces), default=0.0)


def _distinct(faces: list[Face]) -> list[Face]:
    """One face per place: where faces overlap (their points' centres closer than half a face), the
    most confident one, ties to the higher detector score; then in reading order."""
    kept = []
    for f in sorted(faces, key=lambda f: (-f.confidence, -f.score)):
        c, side = f.keypoints.mean(0), face_side(f)
        if all(np.linalg.norm(c - k.keypoints.mean(0)) > side / 2 for k in kept):
            kept.append(f)
    return reading_order(kept)


def reading_order(faces: list[Face]) -> list[Face]:
    """Faces as a reader meets them: rows top to bottom, each left to right. A face joins the row of
    the face above it when their centres lie less than half the row's first face apart in height."""
    rows: list[list[Face]] = []
    for f in sorted(faces, key=lambda f: float(f.keypoints[:, 1].mean())):
        y = float(f.keypoints[:, 1].mean())
        if rows and y - float(rows[-1][0].keypoints[:, 1].mean()) < face_side(rows[-1][0]) / 2:
            rows[-1].append(f)
        else:
            rows.append([f])
    return [f for row in rows for f in sorted(row, key=lambda f: float(f.box[0]))]


def near(box: np.ndarray, face: Face) -> bool:
    """Whether a detector box is on `face`: its centre within half a face of the face's points' centre
    (the rule `_distinct` uses for two faces)."""
    c = (np.asarray(box[:2], np.float64) + np.asarray(box[2:], np.float64)) / 2
    return bool(np.linalg.norm(c - face.keypoints.mean(0)) <= face_side(face) / 2)


def _wrap(degrees: float) -> float:
    return (degrees + 180.0) % 360.0 - 180.0


def corners(box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float32)


def check_detection(given, W: int, H: int) -> Detection:
    """A given box (`check_box`, score 1), or a `Detection` of `detect` with its face points checked (a
    detector's box may be as small as it found it: a video loop must not stop on a distant face)."""
    if not isinstance(given, Detection):
        return Detection(check_box(given, W, H), 1.0)
    marks = None if given.marks is None else np.asarray(given.marks, np.float64)
    if marks is not None and (marks.shape != (6, 2) or not np.isfinite(marks).all()):
        raise ValueError(f"a detection's face points must be six finite (x, y) pairs, got {given.marks!r}")
    return Detection(check_box(given.box, W, H, min_side=1), float(given.score), marks)


def check_box(box, W: int, H: int, min_side: float = 8) -> np.ndarray:
    """A user's box as float (x0, y0, x1, y1), corners in any order; clear errors when unusable."""
    try:
        b = np.asarray(box, dtype=np.float64).reshape(4)
    except (ValueError, TypeError):
        raise ValueError(f"a box needs four numbers x0, y0, x1, y1, got {box!r}") from None
    if not np.isfinite(b).all():
        raise ValueError(f"box {box!r} has a non-finite number")
    x0, x1 = sorted((b[0], b[2]))
    y0, y1 = sorted((b[1], b[3]))
    if x1 <= 0 or y1 <= 0 or x0 >= W or y0 >= H:
        raise ValueError(f"box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) lies outside the {W}×{H} image")
    if x1 - x0 < min_side or y1 - y0 < min_side:
        raise ValueError(f"box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) is too small (under {min_side:g} pixels)")
    return np.array([x0, y0, x1, y1], np.float32)
