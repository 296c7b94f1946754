"""`Landmarker`: any image in, every face's box, score and keypoints out, in original-image pixels.

    lm = Landmarker()
    for face in lm.predict("group.jpg"):               # MediaPipe finds the faces
        print(face.box, face.score, face.keypoints.shape)
    lm.predict(img, boxes=[(x0, y0, x1, y1)])          # a box drawn by a person: no detector

A given box is treated like a detector box (loose, around the face) and goes through the same
calibration to the training crop; `box_kind="landmarks"` takes it as the tight landmark box.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fkd.calibration import IDENTITY, load_calibration
from fkd.geometry import CropSpec, apply_affine, crop_matrix, invert_affine, mirror_points, to_gray, warp
from fkd.io import ImageError, ImageLike, load_image_sized
from fkd.layouts import LAYOUTS
from fkd.weights import WeightsError, load_model, resolve

MODELS = {"ibug68_kd": "300-W 68 points, distilled (Part 3, default)",
          "ibug68": "300-W 68 points, from scratch (the distilled model's start)",
          "ibug68_ctx": "300-W 68 points, with stride-32 context (slower)",
          "ibug68_slim": "300-W 68 points, slim head (fastest)",
          "ibug68_resnet18": "300-W 68 points, ResNet18 baseline",
          "imm58": "IMM 58 points (Part 2)", "nose": "nose tip (Part 1)"}

DEFAULT_MODEL = next(iter(MODELS))  # the first entry, "ibug68_kd": what the CLIs, the app and Landmarker() use

__all__ = ["Face", "Landmarker", "WeightsError", "ImageError", "MODELS", "DEFAULT_MODEL"]


@dataclass
class Face:
    box: np.ndarray          # (4,) x0, y0, x1, y1: the detector's or the given box
    score: float             # detector confidence (1.0 for a given box)
    keypoints: np.ndarray    # (N, 2) 0-based pixels of the original image
    confidence: float        # the landmark model's own confidence in [0, 1] (1.0 if it has none)

    def to_dict(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box], "score": round(self.score, 4),
                "confidence": round(self.confidence, 4),
                "keypoints": [[round(float(x), 2), round(float(y), 2)] for x, y in self.keypoints]}


class Landmarker:
    """Loads a landmark model (weights/<model>.safetensors + card) and, lazily, the face detector."""

    def __init__(self, model: str | Path = DEFAULT_MODEL, detector: str = "mediapipe", device: str = "cpu",
                 flip_test: bool = False, min_score: float = 0.5, backend: str = "auto", threads: int | None = None,
                 min_confidence: float = 0.8):
        """backend: "openvino" (bfloat16 where the CPU has it), "onnx" (ONNX Runtime), "torch", or
        "auto": on CPU, openvino where the CPU computes in bfloat16 (the fastest), else onnx when
        installed, else torch. threads: CPU threads for OpenVINO / ONNX Runtime (None = all cores).
        min_confidence: detector faces whose landmark confidence is lower are dropped: BlazeFace
        also fires on ears and patterns, which get 0.4-0.9, while 671 labelled 300-W faces all got
        >= 0.94 (ibug68). Boxes a user gives are always kept."""
        self.model, self.card = load_model(model, device)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.cfg = self.model.cfg
        self.layout = LAYOUTS[self.card["layout"]]
        self.crop = CropSpec(**self.card["crop"])
        self.calibration = load_calibration("imm58" if self.card["layout"] in ("imm58", "nose") else "ibug68")
        self.device, self.flip_test = device, flip_test
        self._detector_name, self._min_score, self._detector = detector, min_score, None
        self.min_confidence = min_confidence
        from fkd.runtime import OnnxRunner, OpenVinoRunner, pick_backend
        self.backend = pick_backend(backend, device)
        runner = {"openvino": OpenVinoRunner, "onnx": OnnxRunner}.get(self.backend)
        self._runner = runner(self.model, self.cfg, resolve(model), threads) if runner else None

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def detector(self):
        if self._detector is None:
            from fkd.detect import make_detector
            self._detector = make_detector(self._detector_name, min_score=self._min_score)
        return self._detector

    # -----------------------------------------------------------------------------------------
    def detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        return self.detector.detect(rgb)

    def predict(self, image: ImageLike, boxes=None, box_kind: str = "face", flip_test: bool | None = None) -> list[Face]:
        """Every face in `image` (or one per given box, in original-image pixels). [] = no face.
        flip_test: average with a mirrored pass for this call (None = the Landmarker's setting)."""
        rgb, (W, H) = load_image_sized(image)
        scale = W / rgb.shape[1]  # huge photos are worked on downscaled; results go back to full size
        if boxes is None:
            found = self.detect(rgb)
            given = False
        else:
            found = [(check_box(b, W, H) / scale, 1.0) for b in boxes]
            given = True
        if not found:
            return []
        kind = "landmarks" if (given and box_kind == "landmarks") else "face"
        pts, conf = self.predict_boxes(rgb, [b for b, _ in found], kind, flip_test)
        return [Face(box=(b * scale).astype(np.float32), score=s, keypoints=p * scale, confidence=c)
                for (b, s), p, c in zip(found, pts, conf) if given or c >= self.min_confidence]

    def model_inputs(self, rgb: np.ndarray, boxes: list[np.ndarray], box_kind: str = "face"):
        """The model's input for each box: (crop matrices image → input, x (B, C, H, W) in [-0.5, 0.5])."""
        size = (self.cfg.input_w, self.cfg.input_h)
        cal = self.calibration if box_kind == "face" else IDENTITY
        mats, crops = [], []
        for b in boxes:
            M = crop_matrix(cal.apply(np.asarray(b, np.float32)), self.crop, size)
            patch = warp(rgb, M, size)
            patch = to_gray(patch)[None] if self.cfg.in_channels == 1 else patch.transpose(2, 0, 1)
            mats.append(M)
            crops.append(torch.from_numpy(np.ascontiguousarray(patch)))
        return mats, torch.stack(crops).float().div_(255).sub_(0.5)

    @torch.inference_mode()
    def predict_boxes(self, rgb: np.ndarray, boxes: list[np.ndarray], box_kind: str = "face",
                      flip_test: bool | None = None):
        """Keypoints for boxes on an already-loaded RGB image: (list of (N, 2), list of confidences)."""
        size = (self.cfg.input_w, self.cfg.input_h)
        mats, x = self.model_inputs(rgb, boxes, box_kind)
        pred, conf = self._run(x)
        if (self.flip_test if flip_test is None else flip_test) and len(self.layout.flip) > 1:
            pf, cf = self._run(torch.flip(x, dims=[-1]))
            pred = (pred + mirror_points(pf, size[0], self.layout.flip)) / 2
            conf = (conf + cf) / 2
        pts = [apply_affine(invert_affine(M), p) for M, p in zip(mats, pred)]
        return pts, [float(c) for c in conf]

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
