"""Fast CPU inference: the landmark model exported to ONNX and run by ONNX Runtime.

For these small conv nets at batch 1, ONNX Runtime is 5-7× faster than PyTorch eager on one CPU
thread (bench/accuracy.py measures both). The export is made from the safetensors weights on
first use and cached under ~/.cache/fkd (keyed by the weights' hash), so nothing but the
safetensors file is shipped and the two can never disagree.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch

CACHE_DIR = Path(os.environ.get("FKD_CACHE", Path.home() / ".cache" / "fkd"))


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False


class _Export(torch.nn.Module):
    """What the ONNX graph computes: points in input pixels and a per-face confidence."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        if hasattr(self.model, "predict_with_confidence"):
            return self.model.predict_with_confidence(x)
        pred, _ = self.model(x)
        return pred, torch.ones(x.shape[0], dtype=x.dtype)


# bump when the exported graph changes, so that old cached exports are not reused
EXPORT_VERSION = "b2"


def export_onnx(model: torch.nn.Module, cfg) -> bytes:
    """A graph for batch 1: with every shape fixed, ONNX Runtime drops the shape arithmetic of the
    decoding (~0.3 ms of ~4.5 at 160²); several faces run one after the other."""
    buf = io.BytesIO()
    x = torch.zeros(1, cfg.in_channels, cfg.input_h, cfg.input_w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Export(model).eval(), (x,), buf, input_names=["x"], output_names=["points", "confidence"],
                          opset_version=17, dynamo=False)
    return buf.getvalue()


class OnnxRunner:
    """`runner(x float32 (B, C, H, W)) -> (points (B, N, 2), confidence (B,))` as numpy arrays."""

    def __init__(self, model: torch.nn.Module, cfg, weights_path: Path, threads: int | None = None):
        import onnxruntime as ort

        digest = hashlib.sha256(Path(weights_path).read_bytes()).hexdigest()[:16]
        # the graph bakes in the decoding's temperature too: a changed one must not reuse an old export
        t = getattr(model, "decode_temperature", None)
        cached = CACHE_DIR / f"{Path(weights_path).stem}-{digest}-{EXPORT_VERSION}{'' if t is None else f'-t{t:g}'}.onnx"
        if cached.exists():
            blob = cached.read_bytes()
        else:
            blob = export_onnx(model, cfg)
            try:
                from fkd.weights import atomic_write
                atomic_write(cached, lambda t: Path(t).write_bytes(blob))
            except OSError:
                pass  # read-only home: keep it in memory only
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        outs = [self.session.run(None, {"x": x[i:i + 1]}) for i in range(len(x))]
        return np.concatenate([p for p, _ in outs]), np.concatenate([c for _, c in outs])
