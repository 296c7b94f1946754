"""Fast CPU inference: the landmark model exported to ONNX, run by OpenVINO or ONNX Runtime.

For these small conv nets at batch 1, ONNX Runtime is 5-7× faster than PyTorch eager on one CPU
thread, and OpenVINO in bfloat16 is ~1.5× faster again on CPUs with bfloat16 instructions
(AVX512-BF16, AMX) at the same accuracy (bench/accuracy.py measures all three). The graphs ship in
weights/ beside the safetensors (`python -m fkd.export`), each with the hash of the weights it was
made from: a graph made from other weights is not used (it is exported again, where torch is
installed, and cached under ~/.cache/fkd), so the two can never disagree.
"""
from __future__ import annotations

import functools
import json
import os
import threading
from pathlib import Path

import numpy as np

from fkd.weights import WeightsError, atomic_write, graph_paths, weights_digest

CACHE_DIR = Path(os.environ.get("FKD_CACHE", Path.home() / ".cache" / "fkd"))
BACKENDS = ("auto", "openvino", "onnx", "torch")


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False


# oneDNN's ISA caps (its ONEDNN_MAX_CPU_ISA values) that keep native bfloat16; a lower cap (AVX2 ...)
# makes OpenVINO refuse a bf16 model ("object is not initialized") on a CPU that has bf16
BF16_ISA_CAPS = ("ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10")


def isa_cap() -> str | None:
    """The instruction-set cap the user set for oneDNN (ONEDNN_MAX_CPU_ISA, or its older name), if any."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or None


@functools.cache
def openvino_bf16() -> bool:
    """OpenVINO is installed and this CPU computes in bfloat16 natively (where it beats ONNX Runtime;
    in float32 the two were level, 2.95 against 2.90 ms per face, so "auto" keeps ONNX Runtime), and no
    `isa_cap` below bfloat16 is set. Asked once per process: every Landmarker and its runner would
    otherwise load OpenVINO's CPU plugin again to ask."""
    cap = isa_cap()
    if cap is not None and not cap.upper().startswith(BF16_ISA_CAPS):
        return False
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


# bump when the exported graph changes, so that old cached exports are not reused
EXPORT_VERSION = "b4"


def model_graph(weights_path: Path, load_model=None) -> bytes:
    """The model's ONNX graph: the one shipped beside its weights (weights/<name>.onnx, written by
    `python -m fkd.export`) when its sidecar names these very weights; else one exported now from the
    safetensors (needs torch; `load_model()` gives the torch model) and cached in CACHE_DIR."""
    weights_path = Path(weights_path)
    shipped, side = graph_paths(weights_path)
    digest = weights_digest(weights_path)
    if shipped.exists() and side.exists():
        try:
            if json.loads(side.read_text()).get("weights_sha256") == digest:
                return shipped.read_bytes()
        except (OSError, ValueError):
            pass  # a damaged sidecar: export again below
    if load_model is None:
        raise WeightsError(f"{shipped}: missing or made from other weights; `python -m fkd.export` remakes it")
    model = load_model()
    # the graph bakes in the decoding's temperature too: a changed one must not reuse an old export
    t = getattr(model, "decode_temperature", None)
    cached = CACHE_DIR / f"{weights_path.stem}-{digest[:16]}-{EXPORT_VERSION}{'' if t is None else f'-t{t:g}'}.onnx"
    if cached.exists():
        return cached.read_bytes()
    from fkd.export import onnx_bytes  # torch, and only here
    blob = onnx_bytes(model)
    try:
        atomic_write(cached, lambda tmp: Path(tmp).write_bytes(blob))
    except OSError:
        pass  # read-only home: keep it in memory only
    return blob


def _one_at_a_time(run, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The graphs take batch 1 (see fkd.export.onnx_bytes): several faces go through one after the other."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    outs = [run(x[i:i + 1]) for i in range(len(x))]
    return np.concatenate([p for p, _ in outs]), np.concatenate([c for _, c in outs])


class OnnxRunner:
    """`runner(x float32 (B, C, H, W)) -> (points (B, N, 2), confidence (B,))` as numpy arrays."""

    def __init__(self, blob: bytes, threads: int | None = None):
        import onnxruntime as ort

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

    def __init__(self, blob: bytes, threads: int | None = None):
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16" if openvino_bf16() else "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(blob), "CPU", config)
        self._tensor = ov.Tensor
        self._local = threading.local()  # a request per thread: one is not thread-safe, app users share this runner

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # the thread's request kept, and x handed over without a copy: a new request and infer()'s
        # input dispatch cost ~0.25 ms of a 1.7 ms pass on one core (bench/HISTORY.md)
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.set_input_tensor(self._tensor(x, shared_memory=True))
        request.infer()
        # copies: the request's output memory is rewritten by its next pass
        return request.get_output_tensor(0).data.copy(), request.get_output_tensor(1).data.copy()

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _one_at_a_time(self._run, x)
