"""Many photos: `python -m fkd.predict`'s work spread over processes or a Ray cluster, with results
streamed to a JSON-lines file that a rerun resumes.

    job = Job(model="face68")
    for entry, notes in run_local(job, [("a.jpg", None), ("b.jpg", None)], workers=2):
        ...                                          # entries in the order they finish
    done = read_jsonl("out.jsonl")                   # {image: entry}; a torn last line is cut off
    run_ray(job, tasks, address=None, on_entry=...)  # the same entries from a Ray Data pipeline

One image's way is `annotate` everywhere (one process, N processes, Ray actors), so the entries are
the same whichever runs them; each process or actor builds its Landmarker once.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fkd.data import IMAGE_EXTS
from fkd.io import ImageError
from fkd.results import dumps, image_record
from fkd.zoo import DEFAULT_MODEL

PHOTO_EXTS = (*IMAGE_EXTS, ".gif")  # what a folder contributes (load_image reads more, by content)
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".y4m")  # a hint in the error
RAY_BATCH = 8  # images per Ray batch: results reach the JSONL (and survive a kill) at most this many at a time

Task = tuple[str, "str | None"]  # (image path as given, drawing path or None)


@dataclass(frozen=True)
class Job:
    """What every image of a run gets: the Landmarker's settings and predict's arguments."""
    model: str = DEFAULT_MODEL
    flip_test: bool | str = "auto"         # Landmarker(flip_test=...): True, False or "auto"
    boxes: tuple | None = None             # given face boxes (x0, y0, x1, y1), or None: the detector's
    box_kind: str = "face"
    small_faces: bool = True
    threads: int | None = None             # CPU threads per Landmarker (None: all cores)

    def landmarker(self):
        from fkd.landmarker import Landmarker
        return Landmarker(self.model, flip_test=self.flip_test, threads=self.threads)


def default_workers() -> int:
    """All the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# -----------------------------------------------------------------------------------------------
# one image


def annotate(lm, path: str, job: Job, drawing: str | None = None) -> tuple[dict, list[str]]:
    """One image's entry (fkd.results.image_record, or {"image", "error"}) and the notes for stderr."""
    notes = []
    try:
        if Path(path).is_dir():
            raise ImageError(f"{path}: no images in this folder (looked for {' '.join(PHOTO_EXTS)})")
        faces = lm.predict(path, boxes=job.boxes and list(job.boxes), box_kind=job.box_kind, small_faces=job.small_faces)
        entry = image_record(faces, path, upright_size(path), lm.name)
        if not faces:
            notes.append(f"{path}: no face found")
        if drawing:
            from fkd.io import load_image
            from fkd.viz import draw_faces, save_png
            save_png(Path(drawing), draw_faces(load_image(path, max_side=10**6), faces, contours=lm.layout.contours))
            entry["drawing"] = drawing
    except (ImageError, ValueError) as e:
        hint = "; for a video, python -m fkd.video" if Path(path).suffix.lower() in VIDEO_EXTS else ""
        entry = {"image": path, "error": f"{e}{hint}"}
        notes.append(f"error: {'' if str(path) in str(e) else f'{path}: '}{entry['error']}")
    return entry, notes


def upright_size(path) -> tuple[int, int]:
    """(width, height) of the image as the points see it (a phone photo's EXIF turn applied), from its header."""
    from fkd.io import open_image

    with open_image(path) as im:
        turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        return im.size[::-1] if turned else im.size


# -----------------------------------------------------------------------------------------------
# processes on this machine

_worker_lm = None      # the worker process's Landmarker, built once by _start_worker
_worker_error = None   # why it could not be built, raised by the first task


def _start_worker(job: Job) -> None:
    global _worker_lm, _worker_error
    import cv2
    cv2.setNumThreads(job.threads or 0)  # a worker's share of the cores (0: OpenCV's default)
    if job.threads == 1:
        claim_core()
    try:
        _worker_lm = job.landmarker()
    except Exception as e:  # noqa: BLE001 - raised again in the parent by _work, with its message
        _worker_error = f"{type(e).__name__}: {e}"


def _work(args: tuple[Job, str, str | None]) -> tuple[dict, list[str]]:
    if _worker_lm is None:
        raise RuntimeError(f"the Landmarker could not be built in a worker ({_worker_error})")
    job, path, drawing = args
    return annotate(_worker_lm, path, job, drawing)


def run_local(job: Job, tasks: list[Task], workers: int, lm=None) -> Iterator[tuple[dict, list[str]]]:
    """(entry, notes) for each task as it finishes: in this process with `lm` (or one built here) when
    workers is 1, else in `workers` spawned processes, each with its own Landmarker and
    `job.threads` threads (one: each pinned to a core of its own, `claim_core`).
    Spawned, not forked: the parent may hold ONNX Runtime / OpenVINO threads."""
    if workers <= 1 or len(tasks) <= 1:
        lm = lm or job.landmarker()
        try:
            for path, drawing in tasks:
                yield annotate(lm, path, job, drawing)
        finally:
            lm.close()
        return
    pool = mp.get_context("spawn").Pool(min(workers, len(tasks)), initializer=_start_worker, initargs=(job,))
    try:
        yield from pool.imap_unordered(_work, [(job, p, d) for p, d in tasks], chunksize=1)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


# -----------------------------------------------------------------------------------------------
# the JSON-lines file


def read_jsonl(path: str | Path) -> dict[str, dict]:
    """{image: entry} of the complete lines of a JSONL written by `append_jsonl`; {} if there is no file.
    A last line without its newline was torn by a kill: it is cut off the file (its image is redone).
    A complete line that is not a JSON object raises ValueError: the file is not ours to append to."""
    path = Path(path)
    if not path.exists():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # bytes up to the last complete line
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    done = {}
    for n, line in enumerate(data[:end].splitlines(), 1):
        try:
            entry = json.loads(line)
            done.setdefault(str(entry["image"]), entry)
        except (ValueError, TypeError, KeyError):
            raise ValueError(f"{path}: line {n} is not an image's entry; give a new file or one written "
                             "by python -m fkd.predict --jsonl") from None
    return done


def append_jsonl(f, entry: dict) -> None:
    """One entry as one line, flushed to the OS at once: a killed run loses at most the line being written."""
    f.write(dumps(entry, indent=None) + "\n")
    f.flush()


# -----------------------------------------------------------------------------------------------
# Ray Data


def ray_schema():
    """The Parquet/Arrow columns of an entry: an error row has only image and error."""
    import pyarrow as pa
    face = pa.struct([("box", pa.list_(pa.float64())), ("score", pa.float64()), ("confidence", pa.float64()),
                      ("turn", pa.float64()), ("keypoints", pa.list_(pa.list_(pa.float64())))])
    return pa.schema([("image", pa.string()), ("width", pa.int64()), ("height", pa.int64()), ("model", pa.string()),
                      ("faces", pa.list_(face)), ("drawing", pa.string()), ("error", pa.string())])


def entries_table(entries: list[dict]):
    schema = ray_schema()
    import pyarrow as pa
    return pa.Table.from_pylist([{k: e.get(k) for k in schema.names} for e in entries], schema=schema)


def entry_of_row(row: dict) -> dict:
    """The entry a table row holds, as `annotate` made it (the same keys, in the same order)."""
    if row["error"] is not None:
        return {"image": row["image"], "error": row["error"]}
    entry = {k: row[k] for k in ("image", "width", "height", "model", "faces")}
    if row["drawing"] is not None:
        entry["drawing"] = row["drawing"]
    return entry


class RayPredictor:
    """A Ray Data actor: one Landmarker, built once, for every batch it is given."""

    def __init__(self, job: Job):
        claim_core()
        self.job, self.lm = job, job.landmarker()

    def __call__(self, batch: dict) -> object:
        drawings = batch.get("drawing", [None] * len(batch["image"]))
        return entries_table([annotate(self.lm, str(p), self.job, d or None)[0] for p, d in zip(batch["image"], drawings)])


def parquet_done(folder: str | Path) -> set[str]:
    """The images already in the Parquet files of `folder`. A file that cannot be read (a run killed
    while writing it) is deleted, so its images are done again."""
    import pyarrow.parquet as pq
    done = set()
    for f in sorted(Path(folder).glob("*.parquet")) if Path(folder).is_dir() else []:
        try:
            done.update(pq.read_table(f, columns=["image"]).column("image").to_pylist())
        except Exception:  # noqa: BLE001 - pyarrow raises several types for a torn file
            print(f"{f}: damaged (a run stopped while writing it): removed, its images are done again", file=sys.stderr)
            f.unlink()
    return done


def run_ray(job: Job, tasks: list[Task], address: str | None, *, on_entry: Callable[[dict], None] | None = None,
            parquet: str | None = None, actors: int | None = None, progress: bool = False) -> None:
    """The tasks as a Ray Data pipeline: list → map_batches over actors that each hold one Landmarker
    (reading and predicting, so errors read as in the plain path) → `on_entry` for each entry as it
    arrives in this process (the JSONL), or Parquet files written by the cluster into `parquet`.
    address: None for a local instance (or the cluster `ray start` / RAY_ADDRESS points at), "auto",
    or "ray://host:10001". actors: how many (None: one per CPU of the cluster)."""
    import logging

    import ray

    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             ignore_reinit_error=True)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = progress
    n = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    rows = [{"image": p, "drawing": d or ""} for p, d in tasks]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // RAY_BATCH)))  # a block per batch
    ds = ds.map_batches(RayPredictor, fn_constructor_kwargs={"job": Job(**{**job.__dict__, "threads": 1})},
                        batch_size=RAY_BATCH, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=n),
                        num_cpus=1)
    if parquet is not None:
        ds.write_parquet(parquet)
        return
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        for row in batch.to_pylist():
            on_entry(entry_of_row(row))


_claimed = []  # the open lock file of this process's core: the claim lasts as long as the process


def claim_core() -> int | None:
    """Pin this process to one of its cores that no other process holds through this call, and return
    it; None where all are held (or the OS has no such locks): then the OS places it. Two workers of
    one thread each otherwise share cores with each other's thread pools (MediaPipe's, OpenVINO's)
    and a run on 2 cores gains 1.3× instead of 1.9× (bench/HISTORY.md). A lock file per core in the
    temp folder; the OS releases it when the process ends, however it ends."""
    try:
        import fcntl
        cores = sorted(os.sched_getaffinity(0))
    except (ImportError, AttributeError):
        return None
    folder = Path(tempfile.gettempdir()) / f"fkd-cores-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    for core in cores:
        f = open(folder / f"{core}.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _claimed.append(f)
        os.sched_setaffinity(0, {core})
        return core
    return None


def cores_per_worker(workers: int) -> int:
    return max(1, default_workers() // max(1, workers))

