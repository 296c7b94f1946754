"""Images per second of `python -m fkd.predict --jsonl` over the 300-W validation photos: one worker,
two workers, and the Ray pipeline on a local Ray instance (one actor per core).

    python bench/bulk.py --data /work/shared/data/300w --rounds 3 --out bench/bulk_report.md

Each run is the CLI as a user starts it (a fresh process, default model, --quiet); the bench counts
the JSONL's lines as they appear. "wall" is images over the whole run, start-up included (spawning
the workers, importing, building each model, starting Ray); "steady" is images per second from the
first line to the last, what a long run approaches. The configurations take turns in each round, so
that a neighbour's load on these shared cores falls on all of them; every run's output must hold
the same points as the first's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import cpu_name, report_path  # noqa: E402

CONFIGS = {  # name -> extra CLI arguments
    "1 worker": ["--workers", "1"],
    "2 workers": ["--workers", "2"],
    "Ray local (2 actors)": ["--ray"],
}
POLL = 0.05  # seconds between counts of the JSONL's lines


def val_photos(data: Path) -> list[str]:
    """The distinct photos of the committed 300-W validation split (a photo with two faces counts once)."""
    from fkd.data import find_300w, split_300w
    recs, _ = find_300w(data)
    _, val = split_300w(recs, data)
    return sorted({str(r.image) for r in val})


def run(photos: list[str], extra: list[str], out: Path) -> dict:
    """One CLI run: wall and steady images/s, and the entries it wrote."""
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "fkd.predict", *photos, "--jsonl", str(out), "--quiet", *extra]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen, first, last = 0, None, None
    while p.poll() is None:
        time.sleep(POLL)
        n = out.read_bytes().count(b"\n") if out.exists() else 0
        if n > seen:
            now = time.perf_counter() - t0
            first = first if first is not None else (now, n)
            last, seen = (now, n), n
    wall = time.perf_counter() - t0
    err = p.stderr.read()
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({p.returncode}):\n{err}")
    entries = {e["image"]: e for e in map(json.loads, out.read_text().splitlines())}
    if len(entries) != len(photos):
        raise SystemExit(f"{len(entries)} entries for {len(photos)} photos")
    n = out.read_bytes().count(b"\n")
    last = (wall, n) if last is None or last[1] < n else last
    steady = (last[1] - first[1]) / (last[0] - first[0]) if first and last[0] > first[0] else float("nan")
    return {"wall": len(photos) / wall, "steady": steady, "seconds": wall, "start": first[0] if first else wall,
            "entries": entries}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data/300w", help="the 300-W folder (afw/, helen/, lfpw/)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=report_path, default=ROOT / "bench" / "bulk_report.md")
    args = ap.parse_args()
    photos = val_photos(Path(args.data))
    load = os.getloadavg()
    results = {name: [] for name in CONFIGS}
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, extra in CONFIGS.items():
                res = run(photos, extra, Path(tmp) / "out.jsonl")
                reference = reference or res["entries"]
                if res["entries"] != reference:
                    raise SystemExit(f"{name}: entries differ from the first run's")
                results[name].append(res)
                print(f"round {r + 1} {name}: {res['wall']:.2f} img/s wall ({res['seconds']:.1f} s), "
                      f"{res['steady']:.2f} steady, first line at {res['start']:.1f} s", file=sys.stderr)
    load_after = os.getloadavg()

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    base = {k: med("1 worker", k) for k in ("wall", "steady")}
    faces = sum(len(e.get("faces", ())) for e in reference.values())
    lines = [
        "# Many photos: images per second of `python -m fkd.predict --jsonl`", "",
        f"`python bench/bulk.py --rounds {args.rounds}` on {datetime.now():%Y-%m-%d %H:%M}, {cpu_name()}: "
        f"the {len(photos)} photos of the 300-W validation split ({faces} faces found), default model, "
        f"one CLI run per cell. Load average before / after: {load[0]:.1f} / {load_after[0]:.1f} "
        f"(other sessions share these cores). Medians of {args.rounds} rounds; every run wrote the same points.", "",
        "| configuration | wall img/s (start-up included) | steady img/s (first line → last) | "
        "× 1 worker (steady) | first line after | every run: wall / steady |",
        "|---|---|---|---|---|---|",
    ]
    for name in CONFIGS:
        each = " · ".join(f"{r['wall']:.2f} / {r['steady']:.2f}" for r in results[name])
        lines.append(f"| {name} | {med(name, 'wall'):.2f} | {med(name, 'steady'):.2f} | "
                     f"{med(name, 'steady') / base['steady']:.2f} | {med(name, 'start'):.1f} s | {each} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
