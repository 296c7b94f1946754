"""The network's first layers, read from its weights file with numpy: the filters the app shows,
and what the first one makes of a crop. No torch: the sidecar of the shipped graph
(weights/onnx/<model>.onnx.json, written by `python -m fkd.export`) names the layers and their stride."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fkd.weights import WeightsError, graph_paths, resolve


@dataclass(frozen=True)
class Conv:
    weight: np.ndarray   # (O, I, kh, kw) float32
    bias: np.ndarray | None  # (O,) float32
    stride: int
    padding: int
    groups: int

    def describe(self) -> str:
        """In words: "16 filters of 3×3×3, stride 2" (", depthwise (16 groups)")."""
        o, i, kh, kw = self.weight.shape
        groups = f", depthwise ({self.groups} groups)" if self.groups > 1 else ""
        return f"{o} filters of {i}×{kh}×{kw}, stride {self.stride}{groups}"


def first_convs(name_or_path: str | Path) -> list[Conv]:
    """The model's first two convolutions, as its export's sidecar lists them."""
    from safetensors.numpy import load_file

    path = resolve(name_or_path)
    side = graph_paths(path)[1]
    try:
        layers = json.loads(side.read_text())["first_convs"]
    except (OSError, ValueError, KeyError) as e:
        raise WeightsError(f"{side}: no layer list ({e}); `python -m fkd.export` writes it") from None
    tensors = load_file(str(path))
    f32 = lambda key: None if key is None else tensors[key].astype(np.float32)  # noqa: E731
    return [Conv(f32(c["weight"]), f32(c["bias"]), c["stride"], c["padding"], c["groups"]) for c in layers]


def conv2d(x: np.ndarray, conv: Conv) -> np.ndarray:
    """conv's response to one input x (C, H, W): (O, h, w), as torch's Conv2d computes it."""
    if conv.groups != 1:
        raise ValueError("conv2d takes an ordinary convolution (groups = 1)")
    o, i, kh, kw = conv.weight.shape
    p, s = conv.padding, conv.stride
    xp = np.pad(np.asarray(x, np.float32), ((0, 0), (p, p), (p, p)))
    h, w = (xp.shape[1] - kh) // s + 1, (xp.shape[2] - kw) // s + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::s, ::s][:, :h, :w]  # (I, h, w, kh, kw)
    out = np.einsum("ihwyx,oiyx->ohw", win, conv.weight, optimize=True)
    return out if conv.bias is None else out + conv.bias[:, None, None]
