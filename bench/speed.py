"""The landmark models' time per face alone, in many short rounds taken in turns.

    python bench/speed.py [--models face68_accurate face68] [--rounds 12] [--out bench/speed_report.md]

On a shared 2-core machine one model's time moves by 30 % from one minute to the next, more than
the gaps between models. bench/accuracy.py takes its 3 rounds minutes apart; here each round
times every model once (300 calls on one thread, the default backend, batch 1, after warm-up)
and the rounds follow each other within seconds, so the models meet the same noise. Reported:
the median over rounds of each round's median, and the quietest round.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import cpu_name, median_ms, report_path  # noqa: E402
from fkd.landmarker import Landmarker  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["face68_accurate", "face68"])
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--out", type=report_path, default=str(HERE / "speed_report.md"))
    a = p.parse_args()
    runs = []
    for name in a.models:
        lm = Landmarker(name, threads=1)
        x = torch.rand(1, lm.cfg.in_channels, lm.cfg.input_h, lm.cfg.input_w).numpy() - 0.5
        runs.append((name, lm, x))
    rounds = {name: [] for name in a.models}
    for r in range(a.rounds):
        for name, lm, x in runs:
            rounds[name].append(median_ms(lambda: lm.run(x), n=300))
        print(f"round {r}: " + ", ".join(f"{n} {v[-1]:.2f} ms" for n, v in rounds.items()), flush=True)
    backend = runs[0][1].backend
    for _, lm, _ in runs:
        lm.close()
    lines = ["# Time per face, models in turns\n",
             f"`python bench/speed.py --rounds {a.rounds}` on {time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}, "
             f"torch {torch.__version__}, backend {backend}, 1 thread, batch 1: ms per face of the landmark model "
             f"alone (the crop is ready), the median of 300 calls in each round; every round takes the models in turn.\n",
             "| model | median of the rounds | quietest round | every round |", "|---|---|---|---|"]
    for name, v in rounds.items():
        lines.append(f"| {name} | {np.median(v):.2f} | {min(v):.2f} | {' '.join(f'{t:.2f}' for t in v)} |")
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
