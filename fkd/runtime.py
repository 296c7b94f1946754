"""Fast CPU inference: the landmark model exported to ONNX, run by OpenVINO or ONNX Runtime.

For these small conv nets at batch 1, ONNX Runtime is 5-7× faster than PyTorch eager on one CPU
thread, and OpenVINO in bfloat16 is ~1.5× faster again on CPUs with bfloat16 instructions
(AVX512-BF16, AMX) at the same accuracy (bench/accuracy.py measures all three). The export is made
from the safetensors weights on first use and cached under ~/.cache/fkd (keyed by the weights'
hash), so nothing but the safetensors file is shipped and the two can never disagree.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch

CACHE_DIR = Path(os.environ.get("FKD_CACHE", Path.home() / ".cache" / "fkd"))
BACKENDS = ("auto", "openvino", "onnx", "torch")


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False


@functools.cache
def openvino_bf16() -> bool:
    """OpenVINO is installed and this CPU computes in bfloat16 natively (where it beats ONNX Runtime;
    in float32 the two were level, 2.95 against 2.90 ms per face, so "auto" keeps ONNX Runtime).
    Asked once per process: every Landmarker and its runner would otherwise load OpenVINO's CPU
    plugin again to ask."""
    try:
        import openvino as ov
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # not installed, or no usable CPU plugin
        return False


def pick_backend(backend: str, device: str) -> str:
    """The backend a Landmarker runs on: what was asked, or for "auto" on CPU the fastest one here."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend != "auto":
        return backend
    if device != "cpu":
        return "torch"
    return "openvino" if openvino_bf16() else "onnx" if onnx_available() else "torch"


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
EXPORT_VERSION = "b3"


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


def cached_onnx(model: torch.nn.Module, cfg, weights_path: Path) -> bytes:
    """The model's ONNX graph: from the cache when these weights were exported before, else made now."""
    digest = hashlib.sha256(Path(weights_path).read_bytes()).hexdigest()[:16]
    # the graph bakes in the decoding's temperature too: a changed one must not reuse an old export
    t = getattr(model, "decode_temperature", None)
    cached = CACHE_DIR / f"{Path(weights_path).stem}-{digest}-{EXPORT_VERSION}{'' if t is None else f'-t{t:g}'}.onnx"
    if cached.exists():
        return cached.read_bytes()
    blob = export_onnx(model, cfg)
    try:
        from fkd.weights import atomic_write
        atomic_write(cached, lambda t: Path(t).write_bytes(blob))
    except OSError:
        pass  # read-only home: keep it in memory only
    return blob


def _one_at_a_time(run, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The graphs take batch 1 (see export_onnx): several faces go through one after the other."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    outs = [run(x[i:i + 1]) for i in range(len(x))]
    return np.concatenate([p for p, _ in outs]), np.concatenate([c for _, c in outs])


class OnnxRunner:
    """`runner(x float32 (B, C, H, W)) -> (points (B, N, 2), confidence (B,))` as numpy arrays."""

    def __init__(self, model: torch.nn.Module, cfg, weights_path: Path, threads: int | None = None):
        import onnxruntime as ort

        blob = cached_onnx(model, cfg, weights_path)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _one_at_a_time(lambda xi: self.session.run(None, {"x": xi}), x)


class OpenVinoRunner:
    """The same graph compiled by OpenVINO, in bfloat16 where the CPU has it (validation NME of
    face68_accurate: 3.550 against 3.547 % in float32), else float32. Same call as OnnxRunner."""

    def __init__(self, model: torch.nn.Module, cfg, weights_path: Path, threads: int | None = None):
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16" if openvino_bf16() else "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(cached_onnx(model, cfg, weights_path)), "CPU", config)

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # a request per call (~10 µs): a request is not thread-safe, and app users share this runner
        out = self.compiled.create_infer_request().infer({0: x})
        return out[self.compiled.outputs[0]].copy(), out[self.compiled.outputs[1]].copy()

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _one_at_a_time(self._run, x)
