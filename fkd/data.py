"""Data sets on disk → `FaceRecord`s: pure parsers for .pts, .asf and dlib XML, plus the splits.

Points are always float32 (N, 2), 0-based pixel coordinates with pixel centres on integers,
in the upright image. Parsers raise `ValueError` with the file name on malformed input, including a
coordinate that is not a finite number (a NaN label would turn every metric and loss into NaN).
"""
from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fkd.io import files_under

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
SPLITS_DIR = Path(__file__).with_name("splits")
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"  # where the CLIs look by default (../shared/data)


@dataclass
class FaceRecord:
    image: Path
    points: np.ndarray                   # (N, 2) float32, 0-based pixels
    box: np.ndarray | None = None        # (4,) x0, y0, x1, y1 if the source gives one
    person: str = ""                     # identity, for splits that must not share people
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# parsers

def read_pts(path: str | Path) -> np.ndarray:
    """300-W .pts (1-based) → (N, 2) 0-based. Accepts files with or without the header lines."""
    text = Path(path).read_text(errors="replace")
    n_decl = re.search(r"n_points:\s*(\d+)", text)
    body = text.split("{", 1)[1].split("}", 1)[0] if "{" in text else text
    rows = [ln.split() for ln in body.strip().splitlines() if ln.strip()]
    try:
        pts = np.array([[float(r[0]), float(r[1])] for r in rows], dtype=np.float64).reshape(-1, 2)
    except (ValueError, IndexError):
        raise ValueError(f"{path}: not a .pts file (expected lines of 'x y')") from None
    if n_decl and int(n_decl.group(1)) != len(pts):
        raise ValueError(f"{path}: header says {n_decl.group(1)} points, file has {len(pts)}")
    if len(pts) == 0:
        raise ValueError(f"{path}: no points")
    problem = nonfinite(pts)
    if problem:
        raise ValueError(f"{path}: {problem}")
    return pts.astype(np.float32) - np.float32(1)


def nonfinite(points: np.ndarray) -> str | None:
    """Which point (1-based, in the file's order) has a coordinate that is not a finite number (nan,
    inf, or past float32's ±3.4e38), as a sentence; None if every one is finite."""
    p = np.asarray(points, np.float64)
    bad = np.flatnonzero(~(np.abs(p) <= np.finfo(np.float32).max).all(axis=1))  # False for nan too
    if not len(bad):
        return None
    x, y = points[bad[0]]
    return f"point {bad[0] + 1} is not a finite number ({x:g} {y:g})"


def write_pts(path: str | Path, points: np.ndarray) -> None:
    """Write (N, 2) 0-based points as a 300-W .pts file (1-based)."""
    lines = ["version: 1", f"n_points:  {len(points)}", "{"]
    lines += [f"{x + 1:.3f} {y + 1:.3f}" for x, y in np.asarray(points, dtype=np.float64)]
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n")


def read_asf(path: str | Path) -> tuple[np.ndarray, str]:
    """IMM .asf → (relative points (N, 2) in [0, 1] of width/height, host image name)."""
    lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    try:
        n = int(lines[0])
        rows = [ln.split() for ln in lines[1:1 + n]]
        rel = np.array([[float(r[2]), float(r[3])] for r in rows], dtype=np.float64).reshape(-1, 2)
    except (ValueError, IndexError):
        raise ValueError(f"{path}: not an IMM .asf file") from None
    if len(rel) != n:
        raise ValueError(f"{path}: declares {n} points, has {len(rel)}")
    problem = nonfinite(rel)
    if problem:
        raise ValueError(f"{path}: {problem}")
    rel = rel.astype(np.float32)
    host = lines[1 + n] if len(lines) > 1 + n else ""
    return rel, host


def read_dlib_xml(path: str | Path) -> list[FaceRecord]:
    """dlib / ibug_300W_large_face_landmark_dataset XML → one record per <box> with <part>s."""
    path = Path(path)
    root = ET.parse(path).getroot()
    out = []
    for img in root.iter("image"):
        for k, box in enumerate(img.iter("box")):
            try:  # a missing attribute is None: TypeError
                parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
                if not parts:
                    continue
                pts = np.array([[float(p.get("x")), float(p.get("y"))] for p in parts], dtype=np.float64)
                t, l, w, h = (float(box.get(a)) for a in ("top", "left", "width", "height"))
                image = path.parent / img.get("file")
            except (ValueError, TypeError):
                raise ValueError(f"{path}: face {k + 1} of <image file='{img.get('file')}'>: expected numbers in "
                                 "<box top left width height> and <part name x y>") from None
            if not nonfinite(pts):  # a face with one is named by find_300w, kept as read
                pts = pts.astype(np.float32)
            out.append(FaceRecord(image, pts, np.array([l, t, l + w, t + h], np.float32), meta={"face": k}))
    return out


# ---------------------------------------------------------------------------------------------
# folders of data

def find_300w(root: str | Path, n_points: int = 68) -> tuple[list[FaceRecord], list[str]]:
    """Every image with a .pts beside it under `root`, plus faces from any dlib XML found there.

    Returns (records, problems): images without labels or with bad labels are skipped and named
    in `problems`, so a half-prepared folder trains on what it has and says what it skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    records, problems = [], []
    for img in files_under(root, IMAGE_EXTS):
        pts_path = img.with_suffix(".pts")
        if not pts_path.exists():
            problems.append(f"{img}: no .pts beside it")
            continue
        try:
            pts = read_pts(pts_path)
        except ValueError as e:
            problems.append(str(e))
            continue
        if len(pts) != n_points:
            problems.append(f"{pts_path}: {len(pts)} points, expected {n_points}")
            continue
        records.append(FaceRecord(img, pts, person=_person_300w(img, root)))
    for xml in files_under(root, (".xml",)):
        try:
            recs = read_dlib_xml(xml)
        except ET.ParseError as e:
            problems.append(f"{xml}: not readable XML ({e})")
            continue
        except ValueError as e:  # read_dlib_xml names the file and the face
            problems.append(str(e))
            continue
        for r in recs:
            if len(r.points) != n_points:
                problems.append(f"{xml}: a face with {len(r.points)} points, expected {n_points}")
            elif nonfinite(r.points):  # that face only: the file's other faces are fine
                problems.append(f"{xml}: face {r.meta['face'] + 1} of {r.image.name}: {nonfinite(r.points)}")
            elif not r.image.exists():
                problems.append(f"{xml}: image {r.image} is missing")
            else:
                r.person = str(r.image.relative_to(root))
                records.append(r)
    return records, problems


def _person_300w(img: Path, root: Path) -> str:
    # AFW images with several faces are stored as <image>_<k>: keep them in one split.
    # LFPW's `image_0001` is a name, not a face index: only strip a short `_k` after a longer stem.
    rel = img.relative_to(root).with_suffix("")
    return str(rel.parent / re.sub(r"(?<=\w{4})_\d{1,2}$", "", rel.name))


def find_imm(root: str | Path) -> tuple[list[FaceRecord], list[str]]:
    """IMM face database folder (`NN-Kx.jpg` + `NN-Kx.asf`) → records in pixels, person = NN."""
    from PIL import Image  # only for the image size

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    records, problems = [], []
    for asf in sorted(root.glob("*.asf")):
        img = next((asf.with_suffix(e) for e in (".jpg", ".bmp", ".png") if asf.with_suffix(e).exists()), None)
        if img is None:
            problems.append(f"{asf}: no image beside it")
            continue
        try:
            rel, _ = read_asf(asf)
        except ValueError as e:
            problems.append(str(e))
            continue
        with Image.open(img) as im:
            w, h = im.size
        pts = rel * np.array([w, h], np.float32)
        records.append(FaceRecord(img, pts.astype(np.float32), person=asf.stem.split("-")[0]))
    return records, problems


# ---------------------------------------------------------------------------------------------
# splits

def split_imm(records: list[FaceRecord], first_val_person: int = 33) -> tuple[list, list]:
    """The seeds' split: persons 1–32 train, 33–40 validate (by person, never mixed)."""
    train = [r for r in records if int(r.person) < first_val_person]
    val = [r for r in records if int(r.person) >= first_val_person]
    return train, val


def split_300w(records: list[FaceRecord], root: str | Path, list_file: Path | None = None) -> tuple[list, list]:
    """Validation = the committed file list (paths relative to the data root); the rest trains.

    Faces of one image (AFW's `_k` suffix) share a 'person' and the list was drawn by image,
    so no image is on both sides.
    """
    list_file = list_file or SPLITS_DIR / "300w_val.txt"
    val_names = {ln.strip() for ln in list_file.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    root = Path(root)
    train, val = [], []
    for r in records:
        (val if str(r.image.relative_to(root).as_posix()) in val_names else train).append(r)
    return train, val


def make_val_list(records: list[FaceRecord], root: str | Path, frac: float = 0.1, seed: int = 0) -> list[str]:
    """Draw a validation list by image group (used once to write fkd/splits/300w_val.txt)."""
    groups = sorted({r.person for r in records})
    random.Random(seed).shuffle(groups)
    chosen = set(groups[: round(frac * len(groups))])
    root = Path(root)
    return sorted(str(r.image.relative_to(root).as_posix()) for r in records if r.person in chosen)


# ---------------------------------------------------------------------------------------------
# in-memory training set

class PatchDataset:
    """Faces decoded once into uint8 patches around their crop; augmentation happens in memory.

    Decoding JPEGs is the slow part of a CPU epoch, so each face is cut once, with `pad` pixels
    of context on each side for rotation and shift, and `transform(patch, points)` runs per step.
    """

    def __init__(self, records: list[FaceRecord], spec, size_wh: tuple[int, int], channels: int,
                 pad: tuple[int, int], transform, point_index: list[int] | None = None):
        import torch

        from fkd.geometry import apply_affine, crop_matrix, landmark_box, to_gray, warp
        from fkd.io import load_image

        self.transform = transform
        self.records = records
        self.patches, self.points = [], []
        out_wh = (size_wh[0] + 2 * pad[0], size_wh[1] + 2 * pad[1])
        for r in records:
            img = load_image(r.image, max_side=100_000)
            M = crop_matrix(landmark_box(r.points), spec, size_wh, pad)
            patch = warp(img, M, out_wh)
            patch = to_gray(patch)[None] if channels == 1 else patch.transpose(2, 0, 1)
            pts = apply_affine(M, r.points)
            if point_index is not None:
                pts = pts[point_index]
            self.patches.append(torch.from_numpy(np.ascontiguousarray(patch)))
            self.points.append(torch.from_numpy(pts))

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, i: int):
        return self.transform(self.patches[i], self.points[i])
