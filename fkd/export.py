"""Export a landmark model to ONNX, with its decoding inside, for ONNX Runtime, onnxruntime-web or mobile.

    python -m fkd.export [MODEL] [--out FILE.onnx]     # default: the default model, to ./<MODEL>.onnx

Writes FILE.onnx and FILE.onnx.json beside it. The graph takes one face's crop and gives its points:
    input  "x"           float32 (1, C, H, W): the crop, pixel / 255 - 0.5, RGB (C = 3) or grey (C = 1)
    output "points"      float32 (1, N, 2): x, y in crop pixels (0-based, pixel centres on integers)
    output "confidence"  float32 (1,): the model's belief that this is a face, 0-1 (1.0: it has none)
The JSON says how to cut the crop from a photo and what to add to the points (`label_shift`); its
`how_to_crop` spells the rule out. Needs torch (the runtime only reads the exported files).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from fkd.calibration import load_calibration, load_mark_calibration
from fkd.layouts import LAYOUTS
from fkd.models import conv_layers
from fkd.weights import WeightsError, atomic_write, load_model, resolve, save_json, sidecar_path, weights_digest
from fkd.zoo import DEFAULT_MODEL, MODELS

OPSET = 17


class _Decoded(torch.nn.Module):
    """What the graph computes: points in input pixels and a per-face confidence."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        if hasattr(self.model, "predict_with_confidence"):
            return self.model.predict_with_confidence(x)
        pred, _ = self.model(x)
        return pred, torch.ones(x.shape[0], dtype=x.dtype)


def onnx_bytes(model: torch.nn.Module) -> bytes:
    """The graph for batch 1: with every shape fixed, ONNX Runtime drops the shape arithmetic of the
    decoding; several faces run one after the other."""
    cfg = model.cfg
    buf = io.BytesIO()
    x = torch.zeros(1, cfg.in_channels, cfg.input_h, cfg.input_w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # unfolded, every weight stays the fp16 value the safetensors hold: stored so, half the size
        torch.onnx.export(_Decoded(model).eval(), (x,), buf, input_names=["x"], output_names=["points", "confidence"],
                          opset_version=OPSET, dynamo=False, do_constant_folding=False)
    return _fp16_weights(buf.getvalue())


def _fp16_weights(blob: bytes) -> bytes:
    """Store the float32 weights that fp16 holds exactly as fp16, each cast back to float32 where the
    graph starts: the runtimes fold the casts when they load it, and compute as before."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load_from_string(blob)
    casts, kept = [], []
    for init in m.graph.initializer:
        a = numpy_helper.to_array(init)
        if init.data_type == TensorProto.FLOAT and a.size > 1 and np.array_equal(a.astype(np.float16).astype(np.float32), a):
            kept.append(numpy_helper.from_array(a.astype(np.float16), f"{init.name}_fp16"))
            casts.append(helper.make_node("Cast", [f"{init.name}_fp16"], [init.name], to=TensorProto.FLOAT))
        else:
            kept.append(init)
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    nodes = casts + list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m.SerializeToString()


def first_convs(model: torch.nn.Module) -> list[dict]:
    """The first two convolutions by their weights' names, for fkd.filters to read without torch."""
    names = {m: n for n, m in model.named_modules()}
    return [{"weight": f"{names[c]}.weight", "bias": f"{names[c]}.bias" if c.bias is not None else None,
             "stride": c.stride[0], "padding": c.padding[0], "groups": c.groups} for c in conv_layers(model)[:2]]


def sidecar(card: dict, weights_path: Path, onnx_name: str, model: torch.nn.Module) -> dict:
    """What a caller needs beside the graph: the input, the crop, the points' layout and shift."""
    cfg, layout = card["config"], LAYOUTS[card["layout"]]
    face_map = load_calibration("imm58" if card["layout"] in ("imm58", "nose") else "ibug68")
    marks_map = load_mark_calibration(card["layout"]) if layout.eyes else None
    return {
        "model": card["name"], "onnx": onnx_name, "weights_sha256": weights_digest(weights_path),
        "points": layout.n_points, "layout": layout.name,
        "input": {"name": "x", "shape": [1, cfg["in_channels"], cfg["input_h"], cfg["input_w"]], "layout": "NCHW",
                  "color": "RGB" if cfg["in_channels"] == 3 else "grey (OpenCV's RGB2GRAY weights)",
                  "scale": "pixel / 255 - 0.5", "resample": "bilinear, border replicated"},
        "outputs": {"points": "(1, N, 2) x, y in input pixels, pixel centres on integers",
                    "confidence": "(1,) 0-1; below ~0.8 it is not a face"},
        "crop": card["crop"],
        "how_to_crop": ("box = the face's landmark box (x0, y0, x1, y1); side = max(x1 - x0, y1 - y0); "
                        "centre = box centre + (crop.dx, crop.dy) * side; the input spans crop.w * side by "
                        "crop.h * side around the centre, pixel (cx, cy) landing on ((W - 1) / 2, (H - 1) / 2). "
                        "From a detector's box, first map it with detector_box_to_landmark_box."),
        "detector_box_to_landmark_box": {"dx": face_map.dx, "dy": face_map.dy, "scale": face_map.scale,
                                         "rule": "side = scale * max(w, h); centre = box centre + (dx, dy) * max(w, h); square"},
        "detector_points_to_landmark_box": None if marks_map is None else {
            "weights": [list(row) for row in marks_map.weights],
            "rule": ("from BlazeFace's six face points (eyes, the image's left one first, nose tip, mouth, ears), "
                     "in place of the box map: turn them level about their mean when the eye line lies past 10°; "
                     "c = the mean of the first four, s = the box's max(w, h); f = [1, (x0 - cx) / s, (y0 - cy) / s, "
                     "..., (y5 - cy) / s]; (dx, dy, log_side) = weights · f; the landmark box: centre c + (dx, dy) * s, "
                     "side exp(log_side) * s, square, in the levelled frame (its crop turned back)")},
        "label_shift": card.get("label_shift", [0.0, 0.0]),
        "label_shift_rule": "add to the points (input pixels) before mapping them back to the photo",
        "flip_pairs": list(layout.flip), "eye_corners": list(layout.eyes) if layout.eyes else None,
        "flip_below": card.get("flip_below"),
        "val_nme_percent": card.get("val_metrics", {}).get("nme_mean"),
        "first_convs": first_convs(model),
    }


def export(name_or_path: str | Path, out: Path) -> tuple[Path, Path]:
    """Write OUT (.onnx) and its sidecar (.json) for a model name or weights path."""
    model, card = load_model(name_or_path)
    out = Path(out).with_suffix(".onnx")
    blob = onnx_bytes(model)
    atomic_write(out, lambda t: Path(t).write_bytes(blob))
    side = sidecar_path(out)
    save_json(side, sidecar(card, resolve(name_or_path), out.name, model))
    return out, side


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fkd.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"one of {', '.join(MODELS)}, or a weights path")
    p.add_argument("--out", type=Path, help="the .onnx file to write (default: <model>.onnx here)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    out = args.out or Path(f"{Path(str(args.model)).stem}.onnx")
    try:
        onnx_path, side = export(args.model, out)
    except (WeightsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    info = json.loads(side.read_text())
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB) and {side}: input {info['input']['shape']}, "
          f"{info['points']} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
