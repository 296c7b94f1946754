"""Joint (image, keypoints) transforms: a training preset with torchvision v2, and the eval preset.

Inputs are uint8 patches (C, Hp, Wp) cut with `pad` pixels of context around the model input
(fkd/geometry.crop_matrix), plus (N, 2) points in patch pixels. Outputs are the normalised model
input (C, h, w) in [-0.5, 0.5] and points in input pixels.

torchvision's keypoint affine treats coordinates as continuous (pixel i spans [i, i+1)) while its
flip and our data use pixel centres on integers; `_affine` converts, and a test checks that a
bright pixel and its keypoint still coincide after every transform.
"""
from __future__ import annotations

import math

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


def normalize(img_u8: torch.Tensor) -> torch.Tensor:
    return img_u8.float().div_(255.0).sub_(0.5)


def center_crop(img: torch.Tensor, pts: torch.Tensor, size_wh: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut the input out of the middle of a padded patch (pad is (Wp - w) / 2 on each side)."""
    w, h = size_wh
    ox, oy = (img.shape[-1] - w) // 2, (img.shape[-2] - h) // 2
    return img[..., oy:oy + h, ox:ox + w], pts - torch.tensor([ox, oy], dtype=pts.dtype)


def _affine(img: torch.Tensor, pts: torch.Tensor, angle: float, translate: list[float], scale: float):
    canvas = tuple(img.shape[-2:])
    img = F.affine(tv_tensors.Image(img), angle=angle, translate=translate, scale=scale, shear=[0.0, 0.0],
                   interpolation=v2.InterpolationMode.BILINEAR)
    kp = F.affine(tv_tensors.KeyPoints(pts + 0.5, canvas_size=canvas), angle=angle, translate=translate,
                  scale=scale, shear=[0.0, 0.0])
    return img.as_subclass(torch.Tensor), kp.as_subclass(torch.Tensor) - 0.5


def hflip(img: torch.Tensor, pts: torch.Tensor, perm: list[int] | tuple[int, ...]):
    """Mirror the image and the points, and swap left/right indices so point 36 stays 'left eye'."""
    img = F.horizontal_flip(tv_tensors.Image(img)).as_subclass(torch.Tensor)
    kp = F.horizontal_flip(tv_tensors.KeyPoints(pts, canvas_size=tuple(img.shape[-2:]))).as_subclass(torch.Tensor)
    return img, kp[list(perm)]


class TrainPreset:
    """Flip with L/R swap, rotation, shift and scale (which is also our box jitter), colour, occlusion.

    `shift` is a fraction of the input size and `scale` a range of zoom; set them to cover the
    residual error of the detector-box calibration so that any reasonable box works.
    """

    def __init__(self, *, size_wh: tuple[int, int], flip_perm, rotate: float = 25.0, shift: float = 0.08,
                 scale: tuple[float, float] = (0.88, 1.12), color: float = 0.4, erase: float = 0.3,
                 gray_prob: float = 0.1):
        self.size_wh, self.flip_perm = size_wh, list(flip_perm)
        self.rotate, self.shift, self.scale = rotate, shift, scale
        # no hue jitter: on tensors it costs ~1.6 ms a sample, a sixth of a training step, for little
        self.color = v2.ColorJitter(brightness=color, contrast=color, saturation=color) if color else None
        self.gray = v2.RandomGrayscale(gray_prob) if gray_prob else None
        self.erase = v2.RandomErasing(p=erase, scale=(0.02, 0.12), value=0) if erase else None

    def __call__(self, img: torch.Tensor, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.rand(()) < 0.5:
            img, pts = hflip(img, pts, self.flip_perm)
        angle = float(torch.empty(()).uniform_(-self.rotate, self.rotate))
        # log-uniform zoom: zooming in and out by the same factor are equally likely
        s = math.exp(float(torch.empty(()).uniform_(math.log(self.scale[0]), math.log(self.scale[1]))))
        tx, ty = (float(torch.empty(()).uniform_(-self.shift, self.shift)) * d for d in self.size_wh)
        img, pts = _affine(img, pts, angle, [tx, ty], s)
        img, pts = center_crop(img, pts, self.size_wh)
        if self.color is not None:
            img = self.color(img) if img.shape[0] == 3 else v2.ColorJitter(self.color.brightness, self.color.contrast)(img)
        if self.gray is not None and img.shape[0] == 3:
            img = self.gray(img)
        x = normalize(img)
        if self.erase is not None:
            x = self.erase(x)
        return x, pts


class EvalPreset:
    """No randomness: the centre of the patch, normalised."""

    def __init__(self, *, size_wh: tuple[int, int]):
        self.size_wh = size_wh

    def __call__(self, img: torch.Tensor, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img, pts = center_crop(img, pts, self.size_wh)
        return normalize(img), pts
