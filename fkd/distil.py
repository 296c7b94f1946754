"""Distillation: a teacher made of trained PIPNet models, each averaged over the image and its mirror.

Averaged this way the three shipped 160² models score better than any one of them, but cost six
passes per face. Training one network on their answers (`python train.py face68_accurate`) moves part
of that gain into a single pass, at no cost per face. A teacher may read a larger input than its
student (`ibug68_128_base` learns at 128² from `face68_accurate` at 160²): it sees the student's image
resized to its own input, and its answer is brought back to the student's pixels and grid. It
reads the student's crop whatever its own card's crop (`face68_accurate`, trained on 1.3 box sides, reads
the 128² models' 1.15 and loses nothing there: bench/HISTORY.md).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from fkd.geometry import mirror_points
from fkd.models import PIPNet, Soft


class FlipEnsemble:
    """Cell probabilities and points of several models, averaged over each input and its mirror.

    `flip_perm[i]` is the mirror point of i. The answer is mirror-symmetric by construction:
    the teacher of a mirrored image is the mirrored teacher of the image. `grid_stride`: the
    student's, the grid its cell probabilities are given on (default: the first teacher's).
    """

    def __init__(self, models: list[PIPNet], flip_perm, weight: float, grid_stride: int | None = None):
        if not models or not all(isinstance(m, PIPNet) for m in models):
            raise ValueError("a distillation teacher is made of grid + offset (pipnet) models")
        if len({m.cfg.n_points for m in models}) != 1:  # grids and input sizes may differ: each is mapped
            raise ValueError("the teacher's models must share the points")
        self.models = [m.eval() for m in models]
        self.perm = list(flip_perm)
        self.weight = weight
        self.stride = grid_stride or models[0].cfg.grid_stride

    @classmethod
    def load(cls, names: list[str | Path], flip_perm, weight: float, device: str | torch.device = "cpu",
             grid_stride: int | None = None) -> "FlipEnsemble":
        from fkd.weights import load_model

        return cls([load_model(n, device)[0].to(memory_format=torch.channels_last) for n in names], flip_perm, weight,
                   grid_stride)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> Soft:
        B, _, H, W = x.shape
        oh, ow = H // self.stride, W // self.stride                   # the student's grid
        probs, points = [], []
        for m in self.models:
            th, tw = m.cfg.input_h, m.cfg.input_w
            resized = (th, tw) != (H, W)
            xt = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False) if resized else x
            gh, gw = th // m.cfg.grid_stride, tw // m.cfg.grid_stride
            regrid = (gh, gw) != (oh, ow)                                 # to the student's grid, once per model
            rows, cols = (cell_overlap(gh, oh).to(x), cell_overlap(gw, ow).to(x)) if regrid else (None, None)
            for mirrored in (False, True):
                scores, offsets = m.raw(xt.flip(-1) if mirrored else xt)
                p = scores.softmax(-1)
                pts = m.points(scores, offsets, th, tw)
                if mirrored:  # back to the unmirrored image: flip the grid, swap left and right points
                    p = p.view(B, -1, gh, gw).flip(-1).reshape(B, -1, gh * gw)[:, self.perm]
                    pts = mirror_points(pts, tw, self.perm)
                if regrid:
                    p = torch.einsum("ij,bnjk,lk->bnil", rows, p.view(B, -1, gh, gw), cols).reshape(B, -1, oh * ow)
                if resized:  # to the student's pixels (pixel centres on integers, so the edges scale)
                    pts = (pts + 0.5) * pts.new_tensor([W / tw, H / th]) - 0.5
                probs.append(p)
                points.append(pts)
        return Soft(torch.stack(probs).mean(0), torch.stack(points).mean(0), self.weight)


def cell_overlap(n_from: int, n_to: int) -> torch.Tensor:
    """(n_to, n_from): the share of each of n_from equal cells that falls in each of n_to equal cells
    over the same extent. Columns sum to 1, so probabilities moved with it keep their mass
    (spread evenly within a cell); the identity when n_from == n_to."""
    # edges on a common integer scale (n_from × n_to), so that the shares are exact
    edges_from = torch.arange(n_from + 1) * n_to
    edges_to = torch.arange(n_to + 1) * n_from
    lo = torch.maximum(edges_to[:-1, None], edges_from[None, :-1])
    hi = torch.minimum(edges_to[1:, None], edges_from[None, 1:])
    return (hi - lo).clamp_min(0).float() / n_to
