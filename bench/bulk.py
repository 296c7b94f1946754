"""Images per second of `python -m fkd.predict --jsonl` over the 300-W validation photos: one worker,
two workers, and the Ray pipeline on a local Ray instance (one actor per core).

    python bench/bulk.py --data /work/shared/data/300w --rounds 2 --repeat 5 --out bench/bulk_report.md

Each run is the CLI as a user starts it (a fresh process, default model, --quiet) on the photos
--repeat times over (hard links or copies with distinct names: 195 photos take seconds, about a start-up); the
bench counts the JSONL's lines as they appear. "wall" is images over the whole run, start-up included
(spawning the workers, importing, building each model, starting Ray); "steady" is images per second
between the 10 % and the 90 % line, what a long run approaches. The configurations take turns in each round, so
that a neighbour's load on these shared cores falls on all of them; every run's output must hold
the same points as the first's.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
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
from fkd.data import DATA_DIR  # noqa: E402

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
    seen = [(0.0, 0)]  # (seconds, lines) at each change
    while p.poll() is None:
        time.sleep(POLL)
        n = out.read_bytes().count(b"\n") if out.exists() else 0
        if n > seen[-1][1]:
            seen.append((time.perf_counter() - t0, n))
    wall = time.perf_counter() - t0
    err = p.stderr.read()
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({p.returncode}):\n{err}")
    entries = {e["image"]: e for e in map(json.loads, out.read_text().splitlines())}
    if len(entries) != len(photos):
        raise SystemExit(f"{len(entries)} entries for {len(photos)} photos")
    if seen[-1][1] < len(photos):
        seen.append((wall, len(photos)))
    a = next(s for s in seen if s[1] >= 0.1 * len(photos))
    b = next(s for s in seen if s[1] >= 0.9 * len(photos))
    steady = (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else float("nan")
    return {"wall": len(photos) / wall, "steady": steady, "seconds": wall, "start": seen[1][0], "entries": entries}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA_DIR / "300w"), help="the 300-W folder (afw/, helen/, lfpw/)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5, help="each photo this many times (as hard links or copies)")
    ap.add_argument("--out", type=report_path, default=ROOT / "bench" / "bulk_report.md")
    args = ap.parse_args()
    val = val_photos(Path(args.data))
    load = os.getloadavg()
    results = {name: [] for name in CONFIGS}
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        photos = []
        for k in range(args.repeat):
            for i, f in enumerate(val):
                photos.append(str(Path(tmp) / f"{k}_{i:03d}_{Path(f).name}"))
                try:
                    os.link(f, photos[-1])  # not a symlink: the CLI does a file reached twice once
                except OSError:
                    shutil.copy(f, photos[-1])
        for r in range(args.rounds):
            for name, extra in CONFIGS.items():
                res = run(photos, extra, Path(tmp) / "out.jsonl")
                res["entries"] = {Path(k).name: v | {"image": Path(k).name} for k, v in res["entries"].items()}
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
        f"the {len(val)} photos of the 300-W validation split, each {args.repeat} times ({len(photos)} images, "
        f"{faces} faces found), default model, "
        f"one CLI run per cell. Load average before / after: {load[0]:.1f} / {load_after[0]:.1f} "
        f"(other sessions share these cores). Medians of {args.rounds} rounds; every run wrote the same points.", "",
        "| configuration | wall img/s (start-up included) | steady img/s (10 % → 90 % of the lines) | "
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
