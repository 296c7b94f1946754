"""`Landmarker`: any image in, every face's box, score and keypoints out, in original-image pixels.

    lm = Landmarker()
    for face in lm.predict("group.jpg"):               # MediaPipe finds the faces
        print(face.box, face.score, face.keypoints.shape)
    lm.predict(img, boxes=[(x0, y0, x1, y1)])          # a box drawn by a person: no detector

A given box is treated like a detector box (loose, around the face) and goes through the same
calibration to the training crop; `box_kind="landmarks"` takes it as the tight landmark box.

Boxes off the training crop (`upright=True`, the default): a face whose first pass finds its box
off the crop the models were trained on (a loose box drawn by hand) gets a second pass on the crop
of those points (REFINE).

Tilted heads (`upright=True`): a face whose first pass finds it tilted more than MAX_ROLL degrees
gets a second pass on a crop turned so its eyes are level, and when the detector finds no face the
model is sure of, or finds one lying past ROLLED degrees (the photo may be turned), turned copies of
the image are searched too (TURNS).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from fkd.calibration import IDENTITY, load_calibration
from fkd.geometry import (CropSpec, apply_affine, box_side, compose, crop_matrix, eye_roll, face_side, invert_affine,
                          landmark_box, mirror_points, to_gray, turned_image, upright_crop_matrix, warp)
from fkd.io import ImageError, ImageLike, load_image_sized
from fkd.layouts import LAYOUTS
from fkd.weights import WeightsError, load_model, resolve

MODELS = {"ibug68_kd": "300-W 68 points, distilled (Part 3; the most accurate)",
          "ibug68": "300-W 68 points, from scratch (the distilled model's start)",
          "ibug68_ctx": "300-W 68 points, with stride-32 context (slower)",
          "ibug68_slim": "300-W 68 points, slim head",
          "ibug68_128": "300-W 68 points, 128² input, tighter crop (the fastest)",
          "ibug68_quick": "300-W 68 points, from scratch in 100 epochs on a tighter crop",
          "ibug68_resnet18": "300-W 68 points, ResNet18 baseline",
          # the course models learned from 29 frontal studio faces (IMM): points are rough on other photos
          "imm58": "IMM 58 points (Part 2; rough beyond studio faces)",
          "nose": "nose tip (Part 1; rough beyond studio faces)"}


def default_model(bf16: bool | None = None) -> str:
    """The most accurate model whose one pass stays under 3 ms per face on one thread of this CPU
    (the project's bar). Where OpenVINO computes in bfloat16 that is `ibug68_kd` (2.25 ms median,
    bench/speed_report_bf16.md). Elsewhere it is `ibug68_128`, 0.02-0.05 % NME behind it
    (bench/accuracy_report.md): on an AVX2-only CPU through ONNX Runtime it took 2.90 ms against 4.68
    (bench/speed_report.md). `bf16`: whether this CPU has it (default: ask OpenVINO, as the "auto"
    backend does)."""
    if bf16 is None:
        from fkd.runtime import openvino_bf16
        bf16 = openvino_bf16()
    return "ibug68_kd" if bf16 else "ibug68_128"


DEFAULT_MODEL = default_model()  # what the CLIs, the app and Landmarker() use on this machine

# Tilted heads. The 68-point models trained on faces turned by at most ±25° beyond their own tilt.
# With the validation photos turned 35° (through MediaPipe), one pass gave 4.67 % NME and a second
# pass on the crop levelled by the first pass's eyes 3.55 % (3.54 upright). BlazeFace missed 17 % of
# the faces turned 50°, 77 % at 65°, 96 % at 90°; turned copies of the image find them
# (bench/accuracy_report.md).
MAX_ROLL = 10.0                # degrees: a face tilted more gets the levelled second pass
SURE = 0.95                    # a face found only in a turned copy must be this believable
# Unless some face scores SEARCH_BELOW or more, search TURNS too. Upright passes on photos turned 90°
# or 180° (the model reading a face sideways or upside down) scored up to 0.9675 and 0.9699 on 455
# training photos (ibug68_kd, ONNX Runtime in float32), while 1 % of those faces upright score below
# 0.980. At 0.95, one validation photo turned 180° kept its upside-down answer (0.9507; NME 4.10 % at
# 180° against 3.48 at 0.97); at 0.97, 3 of 195 upright validation photos get a search they do not need.
SEARCH_BELOW = 0.97
SMALL_SURE = 0.9               # a face found only in the small-face tiles (fkd.detect) must be this sure
ROLLED = 45.0                  # degrees: a face found this tilted says the photo may be turned, so its
                               # other faces may show only in a turned copy: TURNS are searched too
# A box that does not sit where the training crops did (drawn by hand, loose or off-centre, or a
# detector's box off on a grey photo) gets a second pass on the crop of the first pass's points,
# when the two crops' corners lie more than REFINE of the input's side apart. Validation faces in
# loose boxes drawn at random (1.15-1.6× the landmark box, moved up to 12 %): NME 4.33 -> 3.49 %,
# FR@8 6.2 -> 0.5 %; through MediaPipe 3.446 -> 3.447 (81 of 195 faces get the pass), grey photos
# 3.56 -> 3.53 (bench/boxes.py). Before the card's label_shift: re-cropping every face gave nothing on
# good boxes (3.487 -> 3.494 with the flip test "auto"); at REFINE 0.1 loose boxes kept 3.64 %, FR@8 1.5 %.
REFINE = 0.05
LEVEL_PASSES = 2               # levelling / REFINE passes at most: a third pass when the second still finds
                               # the crop tilted or off (first pass far off)
TURNS = (45.0, -45.0, 90.0, -90.0, 135.0, -135.0, 180.0)  # look again in the image turned so
TURN_SIDE = 320                # pixels: the turned copies' longer side, for the detector

# The flip test (a second pass on the mirrored crop, averaged in) helps most where the model doubts:
# on the validation split (landmark box) its gain correlates with low confidence (r = -0.31), and
# mirroring only the less sure half of the faces keeps 0.04 of its 0.05 % NME (ibug68_kd).
# flip_test="auto" does that below the card's `flip_below`: the model's median confidence on its
# training faces (fkd.recipes.training_face_stats), chosen there, not on the validation split.
FLIP_BELOW = 0.996             # for cards without `flip_below` (ibug68_kd's median, rounded)

FlipTest = bool | Literal["auto"]  # True: always mirror too; False: one pass; "auto": below flip_below

__all__ = ["Face", "Landmarker", "WeightsError", "ImageError", "MODELS", "DEFAULT_MODEL", "default_model"]


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


class Landmarker:
    """Loads a landmark model (weights/<model>.safetensors + card) and, lazily, the face detector."""

    def __init__(self, model: str | Path = DEFAULT_MODEL, detector: str = "mediapipe", device: str = "cpu",
                 flip_test: FlipTest = "auto", min_score: float = 0.5, backend: str = "auto", threads: int | None = None,
                 min_confidence: float = 0.8, upright: bool = True, small_faces: bool = True):
        """backend: "openvino" (bfloat16 where the CPU has it), "onnx" (ONNX Runtime), "torch", or
        "auto": on CPU, openvino where the CPU computes in bfloat16 (the fastest), else onnx when
        installed, else torch. threads: CPU threads for OpenVINO / ONNX Runtime (None = all cores).
        flip_test: True averages every face with a pass on its mirror (two passes); "auto" does so
        only for faces whose first pass is less sure than the card's `flip_below` (its median on the
        training faces, so about half); False: one pass.
        min_confidence: detector faces whose landmark confidence is lower are dropped: BlazeFace
        also fires on ears and patterns, which get 0.4-0.9, while 671 labelled 300-W faces all got
        >= 0.94 (ibug68). Boxes a user gives are always kept.
        upright: a face box whose first pass finds the head tilted more than MAX_ROLL degrees gets a
        second pass on a levelled crop, one whose first pass finds the box off the training crop
        (REFINE) a second pass on the crop of its points, and where the detector finds no face scoring SEARCH_BELOW or more,
        it looks again in turned copies of the image (TURNS). Landmark boxes (box_kind="landmarks")
        always get one pass.
        small_faces: the detector also looks at large pictures in tiles for faces small in them (a
        group photo; `_small_faces`), ~8 ms per tile on one AVX2 core (15 tiles, ~0.12 s, for a 4:3
        portrait); fkd.stream skips it for video frames, and so should a loop of your own."""
        self.model, self.card = load_model(model, device)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.cfg = self.model.cfg
        self.layout = LAYOUTS[self.card["layout"]]
        self.crop = CropSpec(**self.card["crop"])
        self.input_size = (self.cfg.input_w, self.cfg.input_h)
        self.flip_below = float(self.card.get("flip_below", FLIP_BELOW))  # flip_test="auto" mirrors below it
        # input pixels added to every pass's points, in the unmirrored crop (see fkd.recipes.training_face_stats)
        self.label_shift = np.asarray(self.card.get("label_shift", (0.0, 0.0)), np.float32)
        self.calibration = load_calibration("imm58" if self.card["layout"] in ("imm58", "nose") else "ibug68")
        self.device, self.flip_test = device, _checked_flip(flip_test)
        self._detector_name, self._min_score, self._detector = detector, min_score, None
        self.min_confidence, self.upright, self.small_faces = min_confidence, upright, small_faces
        from fkd.runtime import OnnxRunner, OpenVinoRunner, pick_backend
        self.backend = pick_backend(backend, device)
        runner = {"openvino": OpenVinoRunner, "onnx": OnnxRunner}.get(self.backend)
        self._runner = runner(self.model, self.cfg, resolve(model), threads) if runner else None

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def has_confidence(self) -> bool:
        """Whether the model scores its own answers (the grid models); the ResNet18 baseline says 1.0."""
        return hasattr(self.model, "predict_with_confidence")

    @property
    def detector(self):
        if self._detector is None:
            from fkd.detect import make_detector
            self._detector = make_detector(self._detector_name, min_score=self._min_score)
        return self._detector

    # -----------------------------------------------------------------------------------------
    def detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """The detector's boxes. For a model without a confidence (nothing checks the boxes after), only
        those scored at least `min_score`: the full-range detector looks down to 0.6 × min_score."""
        found = self.detector.detect(rgb)
        return found if self.has_confidence else [(b, s) for b, s in found if s >= self._min_score]

    def predict(self, image: ImageLike, boxes=None, box_kind: str = "face", flip_test: FlipTest | None = None,
                min_confidence: float | None = None, search: bool | None = None,
                turns: Sequence[float] | None = None, small_faces: bool | None = None) -> list[Face]:
        """Every face in `image` (or one per given box, in original-image pixels). [] = no face.
        flip_test, min_confidence: for this call (None = the Landmarker's setting; given boxes are kept
        whatever the model thinks unless min_confidence is given). search: look in turned copies
        when no face is sure or one lies past ROLLED (None = as `upright`); turns: which copies, in
        degrees (None = TURNS). Video can pace both (fkd.stream). small_faces: look in tiles of large pictures
        too (None = the Landmarker's setting)."""
        rgb, (W, H) = load_image_sized(image)
        scale = W / rgb.shape[1]  # huge photos are worked on downscaled; results go back to full size
        if boxes is not None:
            found = [(check_box(b, W, H) / scale, 1.0) for b in boxes]
            kind = "landmarks" if box_kind == "landmarks" else "face"
            faces = self._faces(rgb, found, kind, flip_test, min_confidence or 0.0)  # by default a given box is kept
        else:
            low = self.min_confidence if min_confidence is None else min_confidence
            faces = self._faces(rgb, self.detect(rgb), "face", flip_test, low)
            if (self.small_faces if small_faces is None else small_faces) and self.has_confidence:
                faces += self._small_faces(rgb, faces, flip_test, low)
            faces = _distinct(faces)  # one face per place
            if (self.upright if search is None else search) and self.wants_search(faces):
                faces = _distinct(faces + self._turned_faces(rgb, flip_test, TURNS if turns is None else turns))
        for f in faces:  # back to the original image's pixels
            f.box, f.keypoints = (f.box * scale).astype(np.float32), f.keypoints * scale
        return faces

    def wants_search(self, faces: Sequence[Face]) -> bool:
        """Whether `predict` also looks in turned copies of a picture whose upright pass found `faces`:
        none scores SEARCH_BELOW or more, or one lies tilted past ROLLED. A photo turned 90° (no EXIF tag) showed one of its
        two faces upright, tilted 64°, and only the turned copies found the other, lying at 95°."""
        eyes = self.layout.eyes
        return _best(faces) < SEARCH_BELOW or (bool(eyes) and any(abs(eye_roll(f.keypoints, eyes)) > ROLLED for f in faces))

    def _small_faces(self, rgb: np.ndarray, faces: list[Face], flip_test, low: float) -> list[Face]:
        """Faces small in a large picture beside `faces`, from the detector's tiles, coarse to fine: a
        level closer only while the last one gave faces (a portrait stops after one level, a crowd
        goes on; faces too small for the first level are not looked for when it gave none). A face
        from a tile, often with a weak detector score, must be SMALL_SURE; so only the models with
        a confidence look there."""
        out, seen = [], [(f.box, f.score) for f in faces]
        for side in self.detector.small_face_sides(rgb.shape[1], rgb.shape[0]):
            new = self._faces(rgb, self.detector.detect_small(rgb, side, seen), "face", flip_test, max(low, SMALL_SURE))
            out, seen = out + new, seen + [(f.box, f.score) for f in new]
            if not new:
                break
        return out

    @torch.inference_mode()
    def track(self, image: ImageLike, faces: Sequence[Face], flip_test: FlipTest | None = None) -> list[Face]:
        """The faces of a video's previous frame, found again in this one without the detector.

        Each is cropped as the models were trained, on its landmark box, from its last points, turned
        so its eyes are level (a head lying down stays found). A face the model now believes less
        than `min_confidence` is lost and left out: the caller detects again. The box moves and
        scales with the points, so a drawing does not jump. One pass (+ the flip test) per face, two
        when it moved off its crop (REFINE)."""
        flip = self._flip(flip_test)
        if not faces:
            return []
        rgb, (W, H) = load_image_sized(image)
        scale = W / rgb.shape[1]
        prev = [np.asarray(f.keypoints, np.float64) / scale for f in faces]
        mats = [self.crop_of(p) for p in prev]
        x = self._crops(rgb, mats)
        pts, conf = self._points(x, mats)
        # a face that moved far since the last frame sits off its crop (the tighter the model's crop,
        # the sooner): a second pass on the crop of its new points, as for a box off the training crop
        again = {i: M for i, (p, c) in enumerate(zip(pts, conf))
                 if (M := self._off_crop(p, c, mats[i], self.min_confidence)) is not None}
        self._repass(rgb, again, pts, conf, mats, x)
        self._mirror_into(pts, x, mats, self._to_mirror(conf, flip, self.min_confidence))
        out = []
        for f, p0, p, c in zip(faces, prev, pts, conf):
            if c < self.min_confidence:
                continue
            c0, c1 = p0.mean(0), p.mean(0)
            k = box_side(landmark_box(p)) / max(box_side(landmark_box(p0)), 1e-6)
            box = ((np.asarray(f.box, np.float64) / scale).reshape(2, 2) - c0) * k + c1
            out.append(replace(f, box=(box.reshape(4) * scale).astype(np.float32), keypoints=(p * scale).astype(np.float32), confidence=c))
        return _distinct(out)

    def crop_of(self, points: np.ndarray) -> np.ndarray:
        """The crop (2×3 matrix image → model input) of a face whose points are known: on its landmark
        box as the models were trained, turned so its eyes are level when it lies tilted past MAX_ROLL.
        Needs two points or more: one point (the nose) has no landmark box."""
        eyes = self.layout.eyes
        if eyes and abs(eye_roll(points, eyes)) > MAX_ROLL:
            return upright_crop_matrix(points, eyes, self.crop, self.input_size)
        return crop_matrix(landmark_box(points), self.crop, self.input_size)

    def input_of(self, rgb: np.ndarray, face: Face) -> torch.Tensor:
        """The model's input (1, C, H, W) in [-0.5, 0.5] for a face found in `rgb` (its pixels): `crop_of`
        its points, what following it to the next video frame feeds the model; for a one-point layout
        (the nose), the calibrated crop of its box."""
        if len(face.keypoints) < 2:
            return self.model_inputs(rgb, [face.box])[1]
        return self._crops(rgb, [self.crop_of(np.asarray(face.keypoints, np.float64))])

    def _turned_faces(self, rgb: np.ndarray, flip_test, turns: Sequence[float]) -> list[Face]:
        """The faces found in copies of the image turned by each of TURNS: a head tilted past ~45° may
        show only there, and a tilted face half-seen upright may show better. The detector looks at
        small copies (it works on 128² anyway); the model crops from the full image."""
        k = min(1.0, TURN_SIDE / max(rgb.shape[:2]))
        small = cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else rgb
        k = small.shape[1] / rgb.shape[1]
        shrink = np.array([[k, 0, (k - 1) / 2], [0, k, (k - 1) / 2]])  # pixel centres stay on integers
        out = []
        for degrees in turns:
            turned, A = turned_image(small, degrees)
            # a second look must be sure
            found = self._faces(rgb, self.detector.detect_near(turned), "face", flip_test, SURE, frame=compose(A, shrink))
            out += [replace(f, turn=degrees) for f in found]
        return out

    def _faces(self, rgb: np.ndarray, found, kind: str, flip_test, min_confidence: float, frame=None) -> list[Face]:
        """Faces for (box, score) pairs; those the model believes less than `min_confidence` are dropped.
        `frame`: the boxes are in a turned copy of `rgb` (2×3 map rgb → copy); the Face gets their
        outline in rgb."""
        if not found:
            return []
        pts, conf = self.predict_boxes(rgb, [b for b, _ in found], kind, flip_test, frame, min_confidence)
        if frame is not None:
            back = invert_affine(frame)
            found = [(landmark_box(apply_affine(back, corners(b))), s) for b, s in found]
        return [Face(box=np.asarray(b, np.float32), score=s, keypoints=p, confidence=c)
                for (b, s), p, c in zip(found, pts, conf) if c >= min_confidence]

    def model_inputs(self, rgb: np.ndarray, boxes: list[np.ndarray], box_kind: str = "face", frame=None):
        """The model's input for each box: (crop matrices image → input, x (B, C, H, W) in [-0.5, 0.5]).
        frame: the boxes are in a turned copy of the image; this is the 2×3 map image → copy."""
        cal = self.calibration if box_kind == "face" else IDENTITY
        mats = [crop_matrix(cal.apply(np.asarray(b, np.float32)), self.crop, self.input_size) for b in boxes]
        if frame is not None:
            mats = [compose(M, frame) for M in mats]
        return mats, self._crops(rgb, mats)

    def _crops(self, rgb: np.ndarray, mats: list[np.ndarray]) -> torch.Tensor:
        """The model inputs cut by `mats`, scaled to [-0.5, 0.5] in numpy: torch would spread a 160² crop's
        76,800 values over its thread pool, and waking it after the detector ran cost ~2 ms a frame."""
        patches = [warp(rgb, M, self.input_size) for M in mats]
        x = np.stack([to_gray(p)[None] if self.cfg.in_channels == 1 else p.transpose(2, 0, 1) for p in patches])
        x = x.astype(np.float32)
        x /= 255
        x -= 0.5
        return torch.from_numpy(x)

    @torch.inference_mode()
    def predict_boxes(self, rgb: np.ndarray, boxes: list[np.ndarray], box_kind: str = "face",
                      flip_test: FlipTest | None = None, frame=None, min_confidence: float = 0.0):
        """Keypoints for boxes on an already-loaded RGB image: (list of (N, 2), list of confidences).
        Face boxes of tilted heads get a second, levelled pass, and boxes off the training crop a second
        pass on the crop of their points (see `upright`); `frame`: see model_inputs.
        The flip test runs once per face, on its last crop, and not on crops the model believes less
        than `min_confidence` (the caller drops them): BlazeFace's false detections (ears, patterns)
        are the faces it doubts most, and mirroring them and every levelling pass cost a lying-down
        webcam head ~25 ms per frame on one AVX2 core."""
        flip = self._flip(flip_test)
        mats, x = self.model_inputs(rgb, boxes, box_kind, frame)
        pts, conf = self._points(x, mats)
        eyes = self.layout.eyes
        if box_kind == "face" and self.upright and eyes:
            levelled = [0.0] * len(pts)  # the tilt each face's last crop was levelled for
            for _ in range(LEVEL_PASSES):
                again = {}  # face index -> the crop of its next pass
                for i, p in enumerate(pts):
                    if abs(_wrap(eye_roll(p, eyes) - levelled[i])) > MAX_ROLL:
                        again[i] = upright_crop_matrix(p, eyes, self.crop, self.input_size)
                        levelled[i] = eye_roll(p, eyes)
                    elif (M := self._off_crop(p, conf[i], mats[i], min_confidence)) is not None:
                        again[i] = M
                if not again:
                    break
                self._repass(rgb, again, pts, conf, mats, x)
        self._mirror_into(pts, x, mats, self._to_mirror(conf, flip, min_confidence))
        return pts, conf

    def _off_crop(self, points: np.ndarray, confidence: float, mat: np.ndarray, min_confidence: float) -> np.ndarray | None:
        """The crop of `points` when it lies more than REFINE from `mat`, the crop they were read on
        (a box off the training crop, or a face that moved since the last frame), else None; None too
        below `min_confidence` (crops the caller drops) and when REFINE is off (None)."""
        if REFINE is None or confidence < min_confidence:
            return None
        M = self.crop_of(points)
        return M if crop_shift(mat, M, self.input_size) > REFINE else None

    def _repass(self, rgb: np.ndarray, again: dict[int, np.ndarray], pts, conf, mats: list[np.ndarray],
                x: torch.Tensor) -> None:
        """Pass again the faces in `again` (index -> their new crop), in one batch, over their last pass."""
        if not again:
            return
        m2 = list(again.values())
        x2 = self._crops(rgb, m2)
        xs, x2s = x.numpy(), x2.numpy()  # the same memory; numpy copies on one thread (see _crops)
        for j, (i, p, c) in enumerate(zip(again, *self._points(x2, m2))):
            pts[i], conf[i], mats[i], xs[i] = p, c, m2[j], x2s[j]

    def _flip(self, flip_test: FlipTest | None) -> FlipTest:
        """The flip test for a call: its own setting, else the Landmarker's; never for a layout without mirror pairs."""
        return (self.flip_test if flip_test is None else _checked_flip(flip_test)) if len(self.layout.flip) > 1 else False

    def _to_mirror(self, conf: Sequence[float], flip: FlipTest, min_confidence: float = 0.0) -> np.ndarray:
        """Indices of the crops the flip test mirrors: all (True), none (False), or the doubted ("auto"),
        leaving out those below `min_confidence`, which the caller drops."""
        conf = np.asarray(conf)
        mirror = conf < self.flip_below if flip == "auto" else np.full(len(conf), bool(flip))
        return np.flatnonzero(mirror & (conf >= min_confidence))

    def _points(self, x: torch.Tensor, mats: list[np.ndarray]) -> tuple[list[np.ndarray], list[float]]:
        """One pass on crops x made by `mats`: points in image pixels, confidences (`_mirror_into` adds
        the flip test). The confidence stays the first pass's whatever the flip test: the thresholds
        (min_confidence, SURE, SEARCH_BELOW, flip_below) were measured on it, and averaging in the mirror's made an
        upside-down face look sure (0.944 → 0.950 on a test face turned 180°), so the search of turned
        copies did not run."""
        pred, conf = self._run(x)
        return [self._to_image(M, p) for M, p in zip(mats, pred)], [float(c) for c in conf]

    def _to_image(self, M: np.ndarray, points: np.ndarray) -> np.ndarray:
        """One pass's points (input pixels of the crop made by M, unmirrored) in image pixels, with the
        card's label_shift added in the crop's frame."""
        return apply_affine(invert_affine(M), points + self.label_shift)

    def _mirror_into(self, pts: list[np.ndarray], x: torch.Tensor, mats: list[np.ndarray], idx) -> None:
        """The flip test on crops `idx`: their points (image pixels) averaged with a pass on the mirror."""
        if len(idx):
            pf, _ = self._run(torch.from_numpy(x.numpy()[idx, ..., ::-1].copy()))  # numpy: see _crops
            for i, p in zip(idx, mirror_points(pf, self.cfg.input_w, self.layout.flip)):
                pts[i] = (pts[i] + self._to_image(mats[i], p)) / 2

    @torch.inference_mode()
    def _run(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Model input (B, C, H, W) → points (B, N, 2) in input pixels, confidence (B,), numpy."""
        if self._runner is not None:
            return self._runner(x.numpy())
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        if hasattr(self.model, "predict_with_confidence"):
            pred, conf = self.model.predict_with_confidence(x)
        else:
            pred, conf = self.model(x)[0], torch.ones(len(x))
        return pred.float().cpu().numpy(), conf.float().cpu().numpy()

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()


def _checked_flip(flip_test) -> FlipTest:
    if flip_test not in (True, False, "auto"):
        raise ValueError(f"flip_test must be True, False or 'auto', not {flip_test!r}")
    return flip_test


def crop_shift(M: np.ndarray, M2: np.ndarray, size: tuple[int, int]) -> float:
    """How far crop M (2×3, image → input of `size`) lies from crop M2: the largest move of an input
    corner between them, as a share of the input's side."""
    w, h = size
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
    return float(np.abs(apply_affine(compose(M2, invert_affine(M)), corners) - corners).max() / max(w, h))


def _best(faces: list[Face]) -> float:
    return max((f.confidence for f in faces), default=0.0)


def _distinct(faces: list[Face]) -> list[Face]:
    """One face per place: where faces found by both detectors or in different turned copies overlap
    (their points' centres closer than half a face), the most confident one; left to right like the
    detector. Ties (the models without a confidence all say 1.0) go to the higher detector score;
    a one-point layout (the nose) measures the face by its box."""
    kept = []
    for f in sorted(faces, key=lambda f: (-f.confidence, -f.score)):
        c, side = f.keypoints.mean(0), face_side(f)
        if all(np.linalg.norm(c - k.keypoints.mean(0)) > side / 2 for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.box[0])


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


def check_box(box, W: int, H: int) -> np.ndarray:
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
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise ValueError(f"box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) is too small (under 8 pixels)")
    return np.array([x0, y0, x1, y1], np.float32)
