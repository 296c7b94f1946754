"""Every architecture of the project, each built from a `ModelConfig` stored in its model card.

All models share one interface, in the spirit of nanoGPT:
    pred, loss = model(x, targets)   # x (B, C, H, W) in [-0.5, 0.5]; targets (B, N, 2) input pixels
    pred, _ = model(x)               # pred (B, N, 2) in input pixels (0-based, centres on integers)
so one training loop, one evaluation and one Landmarker serve them all.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import mobilenet_v3_large
from torchvision.models.resnet import BasicBlock, ResNet

from fkd.config import ARCHS, ModelConfig  # noqa: F401  (ModelConfig is part of this module's surface)

# ---------------------------------------------------------------------------------------------
# losses on coordinates

def wing_loss(pred: torch.Tensor, target: torch.Tensor, w: float = 10.0, eps: float = 2.0) -> torch.Tensor:
    """Wing loss (Feng et al. 2018) on coordinates in input pixels: log near 0, L1 far away."""
    d = (pred - target).abs()
    c = w - w * torch.log1p(torch.tensor(w / eps))
    return torch.where(d < w, w * torch.log1p(d / eps), d - c).mean()


class _Regression(nn.Module):
    """Head shared by the direct-regression models: outputs in centred, size-normalised units."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("_size", torch.tensor([cfg.input_w, cfg.input_h], dtype=torch.float32), persistent=False)

    def to_pixels(self, out: torch.Tensor) -> torch.Tensor:
        # out (B, 2N) in [-0.5, 0.5] of the input size → (B, N, 2) pixels with centres on integers
        return (out.view(out.shape[0], -1, 2) + 0.5) * self._size - 0.5

    def regression_loss(self, pred_px: torch.Tensor, target_px: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "wing":
            return wing_loss(pred_px, target_px)
        pn, tn = pred_px / self._size, target_px / self._size
        return F.l1_loss(pn, tn) if self.cfg.loss == "l1" else F.mse_loss(pn, tn)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        pred = self.to_pixels(self.net(x))
        return pred, (self.regression_loss(pred, targets) if targets is not None else None)


def first_argmax(scores: torch.Tensor) -> torch.Tensor:
    """`scores.argmax(-1)` (the first of equal maxima) spelled as max-reductions. ONNX exports argmax
    as TopK, which OpenVINO's CPU plugin ran in 0.12 of 1.7 ms per face (68 points × 400 cells);
    as reductions the exported graph took 0.13–0.18 ms less. The ranks are integers so that a runtime
    that lowers float precision cannot merge two cells (bfloat16 holds integers exactly only to 256)."""
    top = scores.amax(-1, keepdim=True)
    n = scores.shape[-1]
    rank = torch.arange(n, 0, -1, device=scores.device, dtype=torch.int32)  # n … 1: the first max ranks highest
    return n - ((scores >= top).to(torch.int32) * rank).amax(-1).long()


def _conv(cin: int, cout: int, k: int, pad: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad), nn.ReLU(inplace=True))


class NoseCNN(_Regression):
    """Part 1: three conv layers on a 1×60×80 grayscale image → the nose tip (x, y)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.net = nn.Sequential(
            _conv(cfg.in_channels, 12, 5, 2), nn.MaxPool2d(2),   # 12×30×40
            _conv(12, 20, 3, 1), nn.MaxPool2d(2),                # 20×15×20
            _conv(20, 32, 3, 1), nn.MaxPool2d(2),                # 32×7×10
            nn.Flatten(), nn.Linear(32 * (cfg.input_h // 8) * (cfg.input_w // 8), 128), nn.ReLU(inplace=True),
            nn.Linear(128, 2 * cfg.n_points),
        )


class IMMCNN(_Regression):
    """Part 2: six unpadded 3×3 conv layers (pool after every other) on 1×180×240 → 58 points."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        chans = [cfg.in_channels, 16, 16, 32, 32, 32, 32]
        layers, h, w = [], cfg.input_h, cfg.input_w
        for i in range(6):
            layers.append(_conv(chans[i], chans[i + 1], 3))
            h, w = h - 2, w - 2
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.net = nn.Sequential(*layers, nn.Flatten(),           # 32×19×26 = 15808 at 180×240
                                 nn.Linear(32 * h * w, cfg.hidden), nn.ReLU(inplace=True),
                                 nn.Dropout(0.2), nn.Linear(cfg.hidden, 2 * cfg.n_points))


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: a fixed [1 2 1]² blur per channel, then subsample."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :]) / 16
        self.register_buffer("kernel", k.expand(channels, 1, 3, 3).contiguous())

    def forward(self, x):
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.kernel, stride=2, groups=x.shape[1])


def _antialias(module: nn.Module) -> None:
    """Replace every stride-2 conv by its stride-1 version followed by a BlurPool."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d) and child.stride == (2, 2):
            child.stride = (1, 1)
            setattr(module, name, nn.Sequential(child, BlurPool(child.out_channels)))
        else:
            _antialias(child)


class ResNet18Regression(_Regression):
    """Part 3 seed recipe: ResNet18 (optionally narrower / anti-aliased) regressing 2N numbers."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        net = _resnet18(cfg.width, 2 * cfg.n_points)
        if cfg.in_channels != 3:
            net.conv1 = nn.Conv2d(cfg.in_channels, net.conv1.out_channels, 7, 2, 3, bias=False)
        if cfg.blurpool:
            _antialias(net)
            net.maxpool = nn.Sequential(nn.MaxPool2d(3, 1, 1), BlurPool(net.bn1.num_features))
        self.net = net


def _resnet18(width: int, n_out: int) -> ResNet:
    """torchvision's ResNet18 with channels width, 2w, 4w, 8w (64 = the original)."""
    net = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=n_out)
    if width == 64:
        return net
    # ResNet's constructor hard-codes 64: rebuild the stages at the asked width
    net.inplanes = width
    net.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    net.layer1 = net._make_layer(BasicBlock, width, 2)
    net.layer2 = net._make_layer(BasicBlock, 2 * width, 2, stride=2)
    net.layer3 = net._make_layer(BasicBlock, 4 * width, 2, stride=2)
    net.layer4 = net._make_layer(BasicBlock, 8 * width, 2, stride=2)
    net.fc = nn.Linear(8 * width, n_out)
    return net


class Soft(NamedTuple):
    """A teacher's answer for a batch (fkd/distil.py): what PIPNet's loss learns from beside the labels."""
    probs: torch.Tensor     # (B, N, G) cell probabilities
    points: torch.Tensor    # (B, N, 2) input pixels
    weight: float           # 0–1: share of the loss that follows the teacher instead of the labels


# Decoding weighs the 3×3 cells around the best one by their probability at this softmax
# temperature. At 1 the best cell takes nearly all the weight; at 3 its neighbours' own offset
# predictions count too, a small ensemble inside one pass: -0.01 to -0.02 % val NME on each of
# three 160² models (bench/HISTORY.md, "Decoding"). Confidence keeps temperature 1 (its 0.8 threshold).
DECODE_TEMPERATURE = 3.0


class PIPNet(nn.Module):
    """Grid classification + in-cell offsets (PIPNet-style) on a MobileNetV3-Large trunk.

    For each landmark: a score per cell of the (H/s)×(W/s) grid (s = 16, or 8 with the stride-8
    features merged in, FPN-style) and an (x, y) offset per cell.
    Training: cross-entropy over cells + L1 on offsets of the true cell and its 3×3 neighbours.
    Decoding: the best cell, refined by the score-weighted offsets of its 3×3 neighbours (weights
    softened by DECODE_TEMPERATURE), which is smooth over time (less webcam jitter) where a plain
    argmax would jump between cells.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        feats = mobilenet_v3_large(weights=None).features
        if cfg.in_channels != 3:
            feats[0][0] = nn.Conv2d(cfg.in_channels, 16, 3, 2, 1, bias=False)
        self.low = feats[:13]                       # (B, 112, H/16, W/16)
        # the stride-32 stage: 5×5 cells at 160² but 960-wide, ~30 % of the time per face
        self.high = feats[13:16] if cfg.context else None          # (B, 160, H/32, W/32)
        self.lateral = nn.Sequential(nn.Conv2d(160, 112, 1, bias=False), nn.BatchNorm2d(112)) if cfg.context else None
        self.mix = nn.Sequential(
            nn.Conv2d(112, 112, cfg.mix_kernel, padding=cfg.mix_kernel // 2, groups=112, bias=False),
            nn.BatchNorm2d(112), nn.Hardswish(),
            nn.Conv2d(112, cfg.mix_width, 1, bias=False), nn.BatchNorm2d(cfg.mix_width), nn.Hardswish())
        if cfg.grid_stride not in (8, 16):
            raise ValueError(f"pipnet grid_stride must be 8 or 16, not {cfg.grid_stride}")
        if cfg.upsample not in ("nearest", "bilinear"):
            raise ValueError(f"pipnet upsample must be nearest or bilinear, not {cfg.upsample!r}")
        if cfg.mix_kernel % 2 == 0:
            raise ValueError(f"pipnet mix_kernel must be odd, not {cfg.mix_kernel}")
        # stride 8: a finer grid that also merges the stride-8 features (the output of low[6])
        self.fine = (nn.Sequential(nn.Conv2d(40, 112, 1, bias=False), nn.BatchNorm2d(112))
                     if cfg.grid_stride == 8 else None)
        self.head = nn.Conv2d(cfg.mix_width, 3 * cfg.n_points, 1)   # scores, x offsets, y offsets
        self.decode_temperature = DECODE_TEMPERATURE  # an attribute, so a bench can compare others
        for m in self.modules():
            # torchvision's MobileNetV3 uses momentum 0.01: at a high learning rate the running
            # statistics lag the weights for dozens of epochs and eval-mode predictions are poor
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = x
        for i, layer in enumerate(self.low):
            low = layer(low)
            if i == 6:
                f8 = low                                          # (B, 40, H/8, W/8)
        merged = low + self._up(self.lateral(self.high(low)), low) if self.high is not None else low
        if self.fine is not None:
            merged = self.fine(f8) + self._up(merged, f8)
        out = self.head(self.mix(merged))                         # (B, 3N, g_h, g_w)
        B, _, gh, gw = out.shape
        n = self.cfg.n_points
        scores = out[:, :n].reshape(B, n, gh * gw)               # (B, N, G)
        offsets = out[:, n:].reshape(B, 2, n, gh * gw).permute(0, 2, 3, 1)  # (B, N, G, 2) in cells
        return scores, offsets

    def _up(self, coarse: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        # bilinear gives each fine cell its own blend of coarse features; nearest gives the 2×2
        # fine cells under one coarse cell the same ones, so their offsets rest on the fine branch alone
        if self.cfg.upsample == "bilinear":
            return F.interpolate(coarse, size=like.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(coarse, size=like.shape[-2:], mode="nearest")

    def _grid(self, gh: int, gw: int, device) -> torch.Tensor:
        ys, xs = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
        return torch.stack([xs, ys], -1).reshape(-1, 2).float()  # (G, 2) cell corners, in cells

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, soft: Soft | None = None):
        """`soft`: a teacher's cell probabilities and points (fkd/distil.py) mixed into the loss."""
        scores, offsets = self.raw(x)
        pred = self.points(scores, offsets, *x.shape[-2:])
        loss = None
        if targets is not None:
            s = self.cfg.grid_stride
            gh, gw = x.shape[-2] // s, x.shape[-1] // s
            grid = self._grid(gh, gw, x.device)
            loss = self._loss(scores, offsets, grid, (targets + 0.5) / s, gh, gw)
            if soft is not None:
                # the teacher's cell distribution (KL) and its points (offsets), like the labels' loss
                kl = (soft.probs * (soft.probs.clamp_min(1e-8).log() - scores.log_softmax(-1))).sum(-1).mean()
                kd = kl + self.cfg.offset_weight * self._offset_l1(offsets, grid, (soft.points + 0.5) / s, gh, gw)
                loss = (1 - soft.weight) * loss + soft.weight * kd
        return pred, loss

    @staticmethod
    def _neighbours(cell: torch.Tensor, gh: int, gw: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cell (B, N) flat index → (B, N, 9) flat indices of its 3×3 neighbourhood and validity."""
        cy, cx = cell // gw, cell % gw
        d = torch.tensor([-1, 0, 1], device=cell.device)
        ny = (cy[..., None, None] + d[:, None]).expand(*cy.shape, 3, 3).reshape(*cy.shape, 9)
        nx = (cx[..., None, None] + d[None, :]).expand(*cx.shape, 3, 3).reshape(*cx.shape, 9)
        valid = (ny >= 0) & (ny < gh) & (nx >= 0) & (nx < gw)
        return ny.clamp(0, gh - 1) * gw + nx.clamp(0, gw - 1), valid

    def decode(self, scores, offsets, grid, gh, gw, best: torch.Tensor | None = None) -> torch.Tensor:
        """`best`: each point's best cell (B, N), when the caller has it already."""
        best = first_argmax(scores) if best is None else best             # (B, N)
        idx, valid = self._neighbours(best, gh, gw)                        # (B, N, 9)
        prob = (scores / self.decode_temperature).softmax(-1).gather(-1, idx) * valid  # (B, N, 9)
        off = offsets.gather(2, idx[..., None].expand(-1, -1, -1, 2))      # (B, N, 9, 2)
        pos = grid[idx] + off                                              # (B, N, 9, 2) in cells
        return (prob[..., None] * pos).sum(2) / prob.sum(-1, keepdim=True).clamp_min(1e-6)

    def points(self, scores, offsets, h: int, w: int, best: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded points (B, N, 2) in the pixels of an h×w input (pixel centres on integers)."""
        s = self.cfg.grid_stride
        gh, gw = h // s, w // s
        return self.decode(scores, offsets, self._grid(gh, gw, scores.device), gh, gw, best) * s - 0.5

    def predict_with_confidence(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (B, N, 2) in input pixels and a per-face confidence: the mean over landmarks of
        the probability mass in the chosen 3×3 cells (near 1 = sure, low = not a face / occluded)."""
        scores, offsets = self.raw(x)
        best = first_argmax(scores)                                        # once, for the points and the mass
        pred = self.points(scores, offsets, *x.shape[-2:], best)
        idx, valid = self._neighbours(best, x.shape[-2] // self.cfg.grid_stride, x.shape[-1] // self.cfg.grid_stride)
        mass = (scores.softmax(-1).gather(-1, idx) * valid).sum(-1)       # (B, N)
        return pred, mass.mean(-1)

    @staticmethod
    def _cell_of(target_cells: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
        cx = target_cells[..., 0].floor().clamp(0, gw - 1).long()
        cy = target_cells[..., 1].floor().clamp(0, gh - 1).long()
        return cy * gw + cx                                                # (B, N) flat index

    def _offset_l1(self, offsets, grid, target_cells, gh, gw) -> torch.Tensor:
        """L1 of the offsets of the target's cell and its 3×3 neighbours (B, N, 2 targets in cells)."""
        idx, valid = self._neighbours(self._cell_of(target_cells, gh, gw), gh, gw)
        off = offsets.gather(2, idx[..., None].expand(-1, -1, -1, 2))      # (B, N, 9, 2)
        want = target_cells[:, :, None, :] - grid[idx]                     # offset from each neighbour
        return ((off - want).abs().sum(-1) * valid).sum() / valid.sum().clamp_min(1)

    def _loss(self, scores, offsets, grid, target_cells, gh, gw) -> torch.Tensor:
        cell = self._cell_of(target_cells, gh, gw)
        cls = F.cross_entropy(scores.reshape(-1, scores.shape[-1]), cell.reshape(-1))
        return cls + self.cfg.offset_weight * self._offset_l1(offsets, grid, target_cells, gh, gw)


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.arch == "nose_cnn":
        return NoseCNN(cfg)
    if cfg.arch == "imm_cnn":
        return IMMCNN(cfg)
    if cfg.arch == "resnet18":
        return ResNet18Regression(cfg)
    if cfg.arch == "pipnet":
        return PIPNet(cfg)
    raise ValueError(f"unknown architecture {cfg.arch!r}; expected one of {ARCHS}")


def conv_layers(model: nn.Module) -> list[nn.Conv2d]:
    """Every convolution in the order the model holds them, for the app's filter pictures."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first convolution, for the filter grids of the app and the training report."""
    return conv_layers(model)[0]


def describe_conv(conv: nn.Conv2d) -> str:
    """A convolution in words: "16 filters of 3×3×3, stride 2" (", depthwise (16 groups)")."""
    o, i, kh, kw = conv.weight.shape
    groups = f", depthwise ({conv.groups} groups)" if conv.groups > 1 else ""
    return f"{o} filters of {i}×{kh}×{kw}, stride {conv.stride[0]}{groups}"
