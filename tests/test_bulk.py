"""python -m fkd.predict on many photos: --jsonl resumes after kill -9, --workers 2 gives what 1 gives, --ray too."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import FIXTURES, ROOT

PHOTOS = sorted(FIXTURES.glob("*.jpg"))  # two real faces


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 photos (6 copies of each fixture face) and one file that is not an image."""
    d = tmp_path_factory.mktemp("bulk") / "in"
    d.mkdir()
    for k in range(6):
        for p in PHOTOS:
            shutil.copy(p, d / f"{p.stem}_{k}.jpg")
    (d / "zz_notes.jpg").write_text("not an image")
    return d


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "fkd.predict", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def entries(path) -> dict:
    """{image: entry} of a JSONL, checking that no image is in it twice."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    images = [e["image"] for e in lines]
    assert len(images) == len(set(images)), "an image written twice"
    return {e["image"]: e for e in lines}


@pytest.fixture(scope="module")
def reference(folder, tmp_path_factory):
    """The uninterrupted run with one worker."""
    out = tmp_path_factory.mktemp("ref") / "ref.jsonl"
    p = cli(folder, "--jsonl", out, "--workers", "1")
    assert p.returncode == 1, p.stderr  # the one non-image
    ref = entries(out)
    assert len(ref) == 13 and sum("error" in e for e in ref.values()) == 1
    assert all(len(e["faces"][0]["keypoints"]) == 68 for e in ref.values() if "error" not in e)
    assert "1 failed" in p.stderr  # the progress bar counts failures
    return out, ref


def test_kill_9_then_rerun_gives_every_image_once_with_the_same_points(folder, reference, tmp_path):
    out = tmp_path / "out.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "fkd.predict", str(folder), "--jsonl", str(out), "--workers", "1", "--quiet"],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    written = out.read_text().count("\n")
    assert 3 <= written < 13, f"{written} lines before the kill: the kill did not land in the middle"
    rerun = cli(folder, "--jsonl", out, "--workers", "1")
    assert rerun.returncode == 1, rerun.stderr
    assert f"{13 - written} image(s) done now, {written} before" in rerun.stderr
    assert entries(out) == reference[1]


def test_a_torn_last_line_is_redone_and_the_lines_before_it_kept(folder, reference, tmp_path):
    lines = reference[0].read_bytes().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"".join(lines[:4]) + lines[4][:len(lines[4]) // 2])  # killed in the middle of line 5
    p = cli(folder, "--jsonl", out, "--workers", "1", "--quiet")
    assert p.returncode == 1, p.stderr
    assert out.read_bytes().startswith(b"".join(lines[:4]))
    assert entries(out) == reference[1]
    assert "9 image(s) done now, 4 before" in p.stderr


def test_a_file_that_is_not_ours_is_refused_not_appended_to(folder, tmp_path):
    out = tmp_path / "notes.jsonl"
    out.write_text("some notes\nof mine\n")
    p = cli(folder, "--jsonl", out)
    assert p.returncode == 2 and "line 1 is not an image's entry" in p.stderr
    assert out.read_text() == "some notes\nof mine\n"


def test_two_workers_give_what_one_gives(folder, reference, tmp_path):
    out = tmp_path / "out.jsonl"
    p = cli(folder, "--jsonl", out, "--workers", "2")
    assert p.returncode == 1, p.stderr
    assert entries(out) == reference[1]
    # the one JSON keeps the input order whatever order the workers finish in
    p = cli(folder, "--json", tmp_path / "all.json", "--workers", "2", "--quiet")
    assert p.returncode == 1, p.stderr
    assert json.loads((tmp_path / "all.json").read_text()) == [reference[1][k] for k in sorted(reference[1])]


def test_ray_on_a_local_instance_gives_what_the_plain_path_gives(folder, reference, tmp_path):
    pytest.importorskip("ray.data", reason="pip install -r requirements-ray.txt")
    import pyarrow.parquet as pq

    from fkd.bulk import entry_of_row
    small = tmp_path / "small"
    small.mkdir()
    picked = sorted(folder.iterdir())[::4]  # 4 photos and the non-image
    for f in picked:
        shutil.copy(f, small / f.name)
    want = {str(small / f.name): {**reference[1][str(f)], "image": str(small / f.name)} for f in picked}
    for e in want.values():
        if "error" in e:
            e["error"] = e["error"].replace(str(folder), str(small))
    out = tmp_path / "ray.jsonl"
    p = cli(small, "--jsonl", out, "--ray", timeout=600)
    assert p.returncode == 1, p.stderr
    assert entries(out) == want
    p = cli(small, "--ray", "--parquet", tmp_path / "pq", "--quiet", timeout=600)
    assert p.returncode == 0, p.stderr
    rows = pq.read_table(tmp_path / "pq").to_pylist()
    assert {r["image"]: entry_of_row(r) for r in rows} == want and len(rows) == len(want)


def test_bulk_flags_are_checked_before_the_work(folder, tmp_path):
    p = cli("--ray", folder, "--jsonl", tmp_path / "o.jsonl")
    assert p.returncode == 2 and "put --ray after the images" in p.stderr
    p = cli(folder, "--parquet", tmp_path / "pq")
    assert p.returncode == 2 and "add --ray" in p.stderr
    p = cli(folder, "--json", tmp_path / "a.json", "--jsonl", tmp_path / "a.jsonl")
    assert p.returncode == 2 and "pick one" in p.stderr
    p = cli(folder, "--jsonl", tmp_path / "o.jsonl", "--workers", "2", "--model", "no_such_model")
    assert p.returncode == 2 and "no_such_model" in p.stderr and not (tmp_path / "o.jsonl").exists()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this OS")
def test_each_worker_gets_a_core_of_its_own(tmp_path):
    """claim_core pins each process to a core no other holds while it lives; with every core held the
    next is left where the OS puts it; a core is free again once its process has ended."""
    code = ("import os, sys; from fkd.bulk import claim_core; core = claim_core(); "
            "print(core, *sorted(os.sched_getaffinity(0)), flush=True); sys.stdin.read()")
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # locks apart from any other run on this machine

    def start():
        p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        core, *allowed = p.stdout.readline().split()
        return p, core, allowed

    cores = [str(c) for c in sorted(os.sched_getaffinity(0))]
    held = [start() for _ in cores]
    try:
        assert sorted(core for _, core, _ in held) == cores
        assert all(allowed == [core] for _, core, allowed in held)
        extra, core, allowed = start()
        assert core == "None" and allowed == cores
        extra.communicate("")
        first, core, _ = held.pop(0)
        first.communicate("")
        again, core_again, allowed = start()
        held.append((again, core_again, allowed))
        assert core_again == core and allowed == [core]
    finally:
        for p, _, _ in held:
            p.communicate("")
