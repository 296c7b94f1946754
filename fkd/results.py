"""Faces out as files, boxes in as text: the one export format of the app and the CLIs.

    record = image_record(faces, "me.jpg", (W, H), "face68_accurate")   # the JSON of one photo
    dumps(record)                                                 # valid JSON (no NaN), or ValueError
    write_csv("points.csv", [("me.jpg", 1, face.keypoints)])      # image,face,x0,y0,...,xN,yN
    pts_text(face.keypoints)                                      # 300-W .pts (1-based)
    write_downloads(folder, "me", faces, record)                  # .pts per face, JSON, CSV

Points are 0-based pixels of the original image everywhere; a .pts file is 1-based (300-W's
convention). The CSV has one row per face, as Kaggle's facial keypoints task and
`python -m fkd.evaluate --export-csv` do, so the app's CSV and the CLIs' can be read by one script.
No Gradio here.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

# -----------------------------------------------------------------------------------------------
# faces out


def _number(v: float, digits: int) -> float | None:
    """A JSON-safe number: NaN or infinity (a model without a confidence, a broken pass) → null."""
    v = float(v)
    return round(v, digits) if math.isfinite(v) else None


def face_record(face) -> dict:
    """One face (`fkd.landmarker.Face`) as JSON: box, detector score, landmark confidence, turn, keypoints."""
    return {"box": [_number(v, 2) for v in face.box], "score": _number(face.score, 4),
            "confidence": _number(face.confidence, 4), "turn": _number(face.turn, 2),
            "keypoints": [[_number(x, 2), _number(y, 2)] for x, y in np.asarray(face.keypoints, np.float64)]}


def image_record(faces: list, image: str, size: tuple[int, int] | None = None, model: str | None = None) -> dict:
    """One photo's answer: {"image", "width", "height", "model", "faces": [face_record, ...]}."""
    w, h = size if size is not None else (None, None)
    return {"image": str(image), "width": w, "height": h, "model": model, "faces": [face_record(f) for f in faces]}


def dumps(obj, indent: int | None = 1) -> str:
    """JSON text; a NaN or infinity left anywhere raises ValueError instead of writing invalid JSON."""
    return json.dumps(obj, indent=indent, allow_nan=False)


def csv_header(n_points: int) -> list[str]:
    return ["image", "face"] + [c for i in range(n_points) for c in (f"x{i}", f"y{i}")]


def csv_text(rows) -> str:
    """rows: (image name, face number within the image (1, 2, ...), points (N, 2)); every row has N
    points. One line per face: image,face,x0,y0,...,xN,yN (2 decimals); names with commas are quoted."""
    rows = list(rows)
    n = len(rows[0][2]) if rows else 0
    if any(len(p) != n for _, _, p in rows):
        raise ValueError("every face of one CSV needs the same number of points")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_header(n))
    for image, k, points in rows:
        w.writerow([str(image), int(k)] + [f"{v:.2f}" for v in np.asarray(points, np.float64).reshape(-1)])
    return buf.getvalue()


def write_csv(path: str | Path, rows) -> Path:
    Path(path).write_text(csv_text(rows))
    return Path(path)


def pts_text(points: np.ndarray) -> str:
    """(N, 2) 0-based points as a 300-W .pts file (1-based, as fkd.data.read_pts reads it back)."""
    lines = ["version: 1", f"n_points:  {len(points)}", "{"]
    lines += [f"{x + 1:.3f} {y + 1:.3f}" for x, y in np.asarray(points, dtype=np.float64)]
    return "\n".join(lines + ["}"]) + "\n"


def write_pts(path: str | Path, points: np.ndarray) -> Path:
    Path(path).write_text(pts_text(points))
    return Path(path)


def write_downloads(folder: Path, stem: str, faces: list, record: dict) -> list[Path]:
    """One photo's files: `<stem>_face<k>.pts` per face, `<stem>_keypoints.json` (the record) and
    `<stem>_keypoints.csv` (one row per face)."""
    files = [write_pts(folder / f"{stem}_face{k}.pts", f.keypoints) for k, f in enumerate(faces, 1)]
    (folder / f"{stem}_keypoints.json").write_text(dumps(record) + "\n")
    files.append(folder / f"{stem}_keypoints.json")
    files.append(write_csv(folder / f"{stem}_keypoints.csv",
                           [(record["image"], k, f.keypoints) for k, f in enumerate(faces, 1)]))
    return files


def points_table(faces: list) -> list[list]:
    """[face, point, x, y] per point (1-based faces, 0-based points, 0.1 px): the app's points table."""
    return [[k, i, round(float(x), 1), round(float(y), 1)] for k, f in enumerate(faces, 1) for i, (x, y) in enumerate(f.keypoints)]


def faces_table(faces: list, model_label: str, *, has_confidence: bool, min_confidence: float,
                drawn: bool = False, max_rows: int = 12) -> str:
    """Markdown: one row per face (box, detector score, landmark confidence). `drawn`: the boxes are
    the user's, so there is no detector score. A confidence below `min_confidence` (where detector
    boxes are dropped) is flagged, since a drawn box is kept whatever it holds. A crowd lists its
    first `max_rows` faces (77 rows pushed everything under them off the screen) and says where the others are."""
    if not faces:
        return "**No face found.** Try *draw* mode and mark the face with a box."
    low = [has_confidence and f.confidence < min_confidence for f in faces]
    lines = [f"**{len(faces)} face{'s' * (len(faces) > 1)}**, model *{model_label}*",
             "", "| face | box (x0, y0, x1, y1) | detector score | landmark confidence |", "|---|---|---|---|"]
    for k, (f, flag) in enumerate(zip(faces[:max_rows], low), 1):
        # the ⚠ is explained under the table: in the cell, the words pushed the table past a phone's width
        conf = f"{f.confidence:.2f}{' ⚠' if flag else ''}" if has_confidence else "— (this model gives none)"
        lines.append(f"| {k} | {', '.join(f'{v:.0f}' for v in f.box)} | {'drawn' if drawn else f'{f.score:.2f}'} | {conf} |")
    if any(low[:max_rows]):
        lines += ["", f"⚠ landmark confidence below {min_confidence:g}: occluded, blurred or not a face?"]
    if len(faces) > max_rows:
        rest = sum(low[max_rows:])
        lines += ["", f"Faces {max_rows + 1}-{len(faces)} are in the points table and the JSON (under *Points "
                      f"table, JSON and downloads*)" + (f"; ⚠ {rest} of them below {min_confidence:g}." if rest else ".")]
    return "\n".join(lines)


# -----------------------------------------------------------------------------------------------
# boxes in


def parse_boxes(text: str | None) -> list[list[float]] | None:
    """Boxes as JSON text: [[x0, y0, x1, y1], ...] (or one box [x0, y0, x1, y1]); None for empty text.
    ValueError with a plain message for anything else."""
    if not text or not str(text).strip():
        return None
    try:
        boxes = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"boxes must be JSON like [[x0, y0, x1, y1], ...], got {text!r}") from None
    if isinstance(boxes, list) and boxes and all(isinstance(v, (int, float)) for v in boxes):
        boxes = [boxes]  # one box given flat
    for b in boxes if isinstance(boxes, list) else []:
        if not isinstance(b, list) or len(b) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b):
            raise ValueError(f"a box needs four numbers [x0, y0, x1, y1], got {json.dumps(b)}")
    if not isinstance(boxes, list) or not boxes:
        raise ValueError("boxes must be a non-empty JSON list of [x0, y0, x1, y1]")
    return boxes


def annotation_boxes(annotation: dict | None) -> tuple[list[np.ndarray], int]:
    """The boxes of an image annotator's value ({"image": (H, W, 3), "boxes": [{"xmin", ...}]}) in
    its pixels, left to right as the detector's faces are numbered (the annotator gives the last
    drawn first), and the width of its image. ValueError when no box is drawn."""
    if not annotation or annotation.get("image") is None or not annotation.get("boxes"):
        raise ValueError("Draw at least one box around a face (drag on the picture under 'Face boxes'), or switch to 'auto'.")
    boxes = [np.array([b["xmin"], b["ymin"], b["xmax"], b["ymax"]], np.float32) for b in annotation["boxes"]]
    return sorted(boxes, key=lambda b: min(b[0], b[2])), annotation["image"].shape[1]
