"""Load test of the app on loopback: concurrent /keypoints and /morph clients, errors, latency, memory.

    python bench/load_test.py [--clients 20] [--requests 10] [--morphs 2]

Starts `python app.py` on 127.0.0.1 (a free port, its own GRADIO_TEMP_DIR), runs `clients`
gradio_client users × `requests` /keypoints calls plus `morphs` concurrent /morph calls, then
tries to read a server file through the API. Bounded: every call has a timeout and the whole run
stops after --budget seconds. Writes bench/load_report.md.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "data" / "300w"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import report_path  # noqa: E402
from fkd.landmarker import DEFAULT_MODEL  # noqa: E402  (the model the app opens with)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--morphs", type=int, default=2)
    p.add_argument("--budget", type=float, default=900, help="stop everything after this many seconds")
    p.add_argument("--out", type=report_path, default=str(ROOT / "bench" / "load_report.md"))
    a = p.parse_args()
    from gradio_client import Client, handle_file

    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="fkd-load-"))
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_TEMP_DIR": str(tmp), "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    client = None
    while time.time() - t0 < 120:
        try:
            client = Client(url, verbose=False)
            break
        except Exception:
            time.sleep(1)
    if client is None:
        server.kill()
        raise SystemExit("the app did not start in 120 s")
    start_rss = peak_rss_mb(server.pid)
    images = sorted(FIX.rglob("*.jpg"))
    deadline = time.time() + a.budget
    lat = {"keypoints": [], "morph": []}
    errors: list[str] = []
    lock = threading.Lock()

    def user(k: int) -> None:
        c = Client(url, verbose=False)
        for i in range(a.requests):
            if time.time() > deadline:
                return
            img = images[(k + i) % len(images)]
            t = time.time()
            try:
                _, result = c.predict(handle_file(str(img)), "auto", DEFAULT_MODEL, api_name="/keypoints")
                ok = isinstance(result, dict) and result.get("faces") and len(result["faces"][0]["keypoints"]) == 68
                with lock:
                    lat["keypoints"].append(time.time() - t)
                    if not ok:
                        errors.append(f"/keypoints {img.name}: unexpected result")
            except Exception as e:
                with lock:
                    errors.append(f"/keypoints {img.name}: {str(e)[:200]}")

    def morpher(k: int) -> None:
        c = Client(url, verbose=False)
        t = time.time()
        try:
            c.predict(handle_file(str(images[k])), handle_file(str(images[k + 1])), 30, 15, False, api_name="/morph")
            with lock:
                lat["morph"].append(time.time() - t)
        except Exception as e:
            with lock:
                errors.append(f"/morph: {str(e)[:200]}")

    threads = [threading.Thread(target=user, args=(k,)) for k in range(a.clients)]
    threads += [threading.Thread(target=morpher, args=(k,)) for k in range(a.morphs)]
    t_run = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.time()))
    wall = time.time() - t_run

    # A server path where an image is expected must not be read back to the client.
    leak = "not tested"
    try:
        out = client.predict("/etc/passwd", "auto", DEFAULT_MODEL, api_name="/keypoints")
        leak = "LEAK" if "root:" in str(out) else f"refused (returned no file content: {str(out)[:80]})"
    except Exception as e:
        leak = "refused: " + str(e).splitlines()[0][:160]
    peak = peak_rss_mb(server.pid)
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    left = sum(1 for f in tmp.rglob("*") if f.is_file())

    def q(v, f):
        return f"{1000 * statistics.quantiles(v, n=20)[f]:.0f}" if len(v) >= 2 else "n/a"

    kp = lat["keypoints"]
    lines = ["# Load test (loopback only)", "",
             f"`python bench/load_test.py --clients {a.clients} --requests {a.requests} --morphs {a.morphs}` "
             f"on {time.strftime('%Y-%m-%d')}, 2 CPU cores, the app as `python app.py` in its own process.", "",
             "| what | value |", "|---|---|",
             f"| /keypoints calls done | {len(kp)} of {a.clients * a.requests} |",
             f"| /morph calls done (30 frames) | {len(lat['morph'])} of {a.morphs} |",
             f"| errors | {len(errors)} |",
             f"| /keypoints latency p50 / p95 (ms) | {1000 * statistics.median(kp):.0f} / {q(kp, 18)} |" if kp else "| /keypoints latency | n/a |",
             f"| /morph latency (s) | {', '.join(f'{v:.1f}' for v in lat['morph']) or 'n/a'} |",
             f"| throughput (/keypoints per s) | {len(kp) / wall:.1f} |",
             f"| server memory: after start / peak (MB RSS) | {start_rss:.0f} / {peak:.0f} |",
             f"| `/etc/passwd` passed as the image | {leak} |",
             f"| files left in GRADIO_TEMP_DIR after shutdown | {left} |"]
    if errors:
        lines += ["", "Errors:", ""] + [f"- {e}" for e in errors[:20]]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
