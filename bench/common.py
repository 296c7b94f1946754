"""What every benchmark here needs: which CPU it ran on, and a median time per call."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np


def report_path(text: str) -> Path:
    """A bench's --out (argparse `type=`): its folder is made when the flag is read, so that minutes of
    measuring do not end in a report that cannot be written."""
    path = Path(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def cpu_name() -> str:
    """The CPU model and its vector units: the same graph takes ~1.8 ms per face where the CPU computes
    in bfloat16 and ~2-3x that with AVX2 alone, so a report must say which CPU it ran on, and the
    instruction-set cap a run plays a smaller CPU with (`fkd.runtime.isa_cap`)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), platform.machine())
    flags = set(next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), []))
    units = [u for u, f in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX512-BF16", "avx512_bf16"), ("AMX", "amx_bf16"))
             if f in flags]
    from fkd.runtime import isa_cap

    cap = isa_cap()
    capped = f"; oneDNN capped at {cap} (ONEDNN_MAX_CPU_ISA), so OpenVINO computes in float32" if cap else ""
    return f"{model} ({os.cpu_count()} cores; {', '.join(units) or 'no AVX2'}{capped})"


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per call of fn(), `repeats` times, after `warmup` calls (caches, lazy loading)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def median_ms(fn, n: int = 200, warmup: int = 20) -> float:
    """Median milliseconds per call: the median, because a shared machine's hiccups land in the mean."""
    return 1000 * float(np.median(timed(fn, n, warmup)))


def webcam_frame(rgb: np.ndarray, size=(640, 480), fill: int = 90) -> np.ndarray:
    """The photo letterboxed into a webcam-sized frame (no stretching), on grey `fill`."""
    from fkd.geometry import letterbox  # here: as cpu_name, for benches that put fkd on sys.path after
    return letterbox(rgb, size, fill)[0]


def passes_of(lm) -> tuple[int, int]:
    """The passes so far of a Landmarker's model and of its locator (`Landmarker.passes`; 0 without one)."""
    return lm.passes, lm.locator.passes if lm.locator else 0


def counting(lm, fn, items) -> tuple[list, tuple[float, float]]:
    """[fn(item) for item in items], and the passes per item meanwhile (`passes_of`)."""
    before = passes_of(lm)
    out = [fn(item) for item in items]
    return out, tuple((n - b) / max(1, len(items)) for n, b in zip(passes_of(lm), before))
