"""Distillation: a teacher made of trained PIPNet models, each averaged over the image and its mirror.

Averaged this way the three shipped 160² models score better than any one of them, but cost six
passes per face. Training one network on their answers (`python train.py ibug68_kd`) moves part
of that gain into a single pass, at no cost per face.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fkd.geometry import mirror_points
from fkd.models import PIPNet, Soft


class FlipEnsemble:
    """Cell probabilities and points of several models, averaged over each input and its mirror.

    `flip_perm[i]` is the mirror point of i. The answer is mirror-symmetric by construction:
    the teacher of a mirrored image is the mirrored teacher of the image.
    """

    def __init__(self, models: list[PIPNet], flip_perm, weight: float):
        if not models or not all(isinstance(m, PIPNet) for m in models):
            raise ValueError("a distillation teacher is made of grid + offset (pipnet) models")
        if len({(m.cfg.grid_stride, m.cfg.n_points) for m in models}) != 1:
            raise ValueError("the teacher's models must share the grid stride and the points")
        self.models = [m.eval() for m in models]
        self.perm = list(flip_perm)
        self.weight = weight

    @classmethod
    def load(cls, names: list[str | Path], flip_perm, weight: float,
             device: str | torch.device = "cpu") -> "FlipEnsemble":
        from fkd.weights import load_model

        return cls([load_model(n, device)[0].to(memory_format=torch.channels_last) for n in names], flip_perm, weight)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> Soft:
        B, _, H, W = x.shape
        probs, points = [], []
        for m in self.models:
            gh, gw = H // m.cfg.grid_stride, W // m.cfg.grid_stride
            for mirrored in (False, True):
                scores, offsets = m.raw(x.flip(-1) if mirrored else x)
                p = scores.softmax(-1)
                pts = m.points(scores, offsets, H, W)
                if mirrored:  # back to the unmirrored image: flip the grid, swap left and right points
                    p = p.view(B, -1, gh, gw).flip(-1).reshape(B, -1, gh * gw)[:, self.perm]
                    pts = mirror_points(pts, W, self.perm)
                probs.append(p)
                points.append(pts)
        return Soft(torch.stack(probs).mean(0), torch.stack(points).mean(0), self.weight)
