"""Pictures: faces with points, loss curves, galleries, filter grids, CED plots. No Gradio here.

Drawing on images uses OpenCV (fast enough for the webcam loop); plots use matplotlib's Agg
backend and return RGB arrays, so callers decide whether to save or show them.
"""
from __future__ import annotations

import io
from dataclasses import replace

import cv2
import numpy as np

from fkd.geometry import face_side

COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def label(image: np.ndarray, text: str, corner, size: float, color) -> None:
    """`text` just above `corner` (x, y), or just inside where the top edge leaves no room, in
    `color` on a dark outline so that it reads on any photo. Draws in place."""
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, 2)
    x, y = int(round(corner[0])), int(round(corner[1]))
    y = y - 3 if y - h - 3 >= 0 else y + h + 3
    x = min(max(x, 0), max(image.shape[1] - w, 0))
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, tuple(int(c) for c in color), 2, cv2.LINE_AA)


def draw_faces(image: np.ndarray, faces: list, *, contours=(), numbers: bool = False, boxes: bool = True,
               radius: int | None = None) -> np.ndarray:
    """RGB image with each face's box, points (and optionally contour lines and point numbers).

    `faces` items need `.box` (x0, y0, x1, y1) and `.keypoints` (N, 2); the dots are sized to the
    faces (`point_radius`), lines to each face and the image, point numbers to the image.
    """
    out = np.ascontiguousarray(image.copy())
    scale = max(out.shape[:2]) / 640
    r = radius or point_radius(faces)
    thick = max(1, round(1.5 * scale))
    for k, f in enumerate(faces):
        color = COLORS[k % len(COLORS)]
        line = max(1, min(thick, round(face_side(f) / 40)))  # a crowd's 50-px faces: thin lines, not frames
        if boxes and f.box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in f.box)
            cv2.rectangle(out, (x0, y0), (x1, y1), color, line, cv2.LINE_AA)
        pts = np.asarray(f.keypoints, dtype=np.float32)
        for c in contours:
            cv2.polylines(out, [np.round(pts[list(c)]).astype(np.int32)], False, (255, 255, 255), max(1, line // 2), cv2.LINE_AA)
        for x, y in pts:
            cv2.circle(out, (int(round(x)), int(round(y))), r, (0, 255, 0) if len(pts) > 1 else (255, 0, 0), -1, cv2.LINE_AA)
        if numbers:
            number_points(out, pts, 0.3 * scale + 0.1, r)
    return out


def resize(rgb: np.ndarray, k: float) -> np.ndarray:
    """The image scaled by k: area-averaged down, blocky up (a small photo's pixels stay visible)."""
    if k == 1.0:
        return rgb
    return cv2.resize(rgb, (max(1, round(rgb.shape[1] * k)), max(1, round(rgb.shape[0] * k))),
                      interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_NEAREST)


def shrink(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """(image with longest side ≤ max_side, factor applied)."""
    s = min(1.0, max_side / max(rgb.shape[:2]))
    return resize(rgb, s), s


def scaled(face, s: float, shift: float = 0.0):
    """The face (a dataclass with `.box`, `.keypoints`) with its box and points scaled by s and shifted."""
    return replace(face, box=face.box * s + shift, keypoints=face.keypoints * s + shift)


def display_copy(rgb: np.ndarray, max_side: int, min_side: int = 0) -> np.ndarray:
    """The picture the browser shows: shrunk to `max_side`, and a small one enlarged to `min_side`
    (drawn on an enlarged copy, not shown as a stamp)."""
    small = shrink(rgb, max_side)[0]
    if max(small.shape[:2]) < min_side:
        small = resize(small, min_side / max(small.shape[:2]))
    return small


def annotate_photo(shown: np.ndarray, faces: list, full_w: int, *, contours=(), numbers: bool = False,
                   numbers_min_side: float = 150) -> tuple[np.ndarray, int]:
    """`shown` (a display copy of a photo `full_w` pixels wide) with each face's box, points,
    contours and, with `numbers`, point numbers, all sized to the faces, not the photo; with several
    faces, each box gets its number (as in `fkd.results.faces_table`). Faces are in the photo's
    pixels. Returns the drawing and how many faces were too small on it (< `numbers_min_side`
    display pixels) for their numbers: a group photo's 50-px faces came out as yellow blots."""
    s = shown.shape[1] / full_w  # photo pixels → display pixels
    drawn = [scaled(f, s, (s - 1) / 2) for f in faces]  # pixel centres sit on integers in both: x → (x + 0.5) s - 0.5
    sides = [face_side(f) for f in drawn]  # by the points: a full-range box can be twice the face
    out = draw_faces(shown, drawn, contours=contours)
    if len(drawn) > 1:  # the faces table's numbers, by each box in its colour
        for k, (f, side) in enumerate(zip(drawn, sides)):
            label(out, str(k + 1), (f.box[0], f.box[1]), float(np.clip(side / 120, 0.45, 1.4)), COLORS[k % len(COLORS)])
    unnumbered = 0
    for f, side in zip(drawn, sides) if numbers else ():
        if side < numbers_min_side and len(f.keypoints) > 1:
            unnumbered += 1
            continue
        number_points(out, f.keypoints, float(np.clip(side / 750, 0.22, 0.9)), 2)
    return out, unnumbered


def point_radius(faces) -> int:
    """Dots sized to the smallest face, not to the picture: on a 1500-px group photo, dots sized to
    the picture (5 px) turned each 50-px face into a green blot. A one-point layout (the nose tip)
    gets a larger dot: one sized for 68 points is lost in the face."""
    r = int(np.clip(min((face_side(f) for f in faces), default=100.0) / 110, 1, 6))
    return max(4, 3 * r) if faces and len(faces[0].keypoints) == 1 else r


def number_points(image: np.ndarray, points: np.ndarray, size: float, gap: int) -> None:
    """Each point's index beside it (up-right by `gap` px), in yellow, font scale `size`. Draws in place."""
    for i, (x, y) in enumerate(points):
        cv2.putText(image, str(i), (int(x) + gap, int(y) - gap), cv2.FONT_HERSHEY_SIMPLEX, size, (255, 255, 0), 1,
                    cv2.LINE_AA)


def _fig_to_array(fig, pad: float = 0.1) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", pad_inches=pad)
    import matplotlib.pyplot as plt

    plt.close(fig)
    buf.seek(0)
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_scale(history: list[dict]) -> str:
    """"log" where the losses span more than a decade, else "linear": on a log axis a fine-tune's
    0.9-1.6 got two tick labels (10⁰ and 9×10⁻¹), and its curves could not be read."""
    losses = [r[k] for r in history for k in ("train_loss", "val_loss") if r.get(k, 0) > 0]
    return "log" if losses and max(losses) > 10 * min(losses) else "linear"


def loss_curves(history: list[dict], title: str = "") -> np.ndarray:
    """Training and validation loss per epoch (+ validation NME on a second axis when present)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ep = [r["epoch"] for r in history]
    ax.plot(ep, [r["train_loss"] for r in history], label="train loss")
    v = [(r["epoch"], r["val_loss"]) for r in history if "val_loss" in r]
    if v:
        ax.plot(*zip(*v), label="validation loss")
    ax.set_xlabel("epoch"), ax.set_ylabel("loss"), ax.set_yscale(loss_scale(history))
    n = [(r["epoch"], r["val_nme"]) for r in history if "val_nme" in r]
    top = ax
    if n:
        top = ax.twinx()
        top.plot(*zip(*n), color="tab:green", alpha=0.6, label="validation NME %")
        top.set_ylabel("validation NME %"), top.set_ylim(0, max(10, min(30, 2 * min(x[1] for x in n))))
    # one legend for both axes, under the plot: inside it, it covered the curves of one axis or the other
    handles = [h for a in dict.fromkeys([ax, top]) for h in a.get_legend_handles_labels()[0]]
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", ncol=len(handles), frameon=False)
    ax.set_title(title)
    fig.subplots_adjust(bottom=0.2)  # room for the legend
    return _fig_to_array(fig, pad=0.4)  # a margin: the app lays its picture buttons over the top right corner


def filter_grid(weight: np.ndarray, cell: int = 24) -> np.ndarray:
    """Conv filters (O, I, k, k) as an image grid; RGB filters shown in colour, others per channel 0."""
    w = np.asarray(weight, dtype=np.float32)
    tiles = w.transpose(0, 2, 3, 1) if w.shape[1] == 3 else w[:, :1].transpose(0, 2, 3, 1).repeat(3, axis=3)
    n = len(tiles)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (cell + 2) + 2, cols * (cell + 2) + 2, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        t = (t - t.min()) / (t.max() - t.min() + 1e-8)
        t = cv2.resize((t * 255).astype(np.uint8), (cell, cell), interpolation=cv2.INTER_NEAREST)
        r, c = divmod(i, cols)
        grid[2 + r * (cell + 2): 2 + r * (cell + 2) + cell, 2 + c * (cell + 2): 2 + c * (cell + 2) + cell] = t
    return grid


def input_picture(x) -> np.ndarray:
    """A model input (C, H, W) in [-0.5, 0.5] (torch or numpy) as the uint8 RGB picture it was made from."""
    a = ((np.asarray(x, np.float32).transpose(1, 2, 0) + 0.5) * 255).round().clip(0, 255).astype(np.uint8)
    return np.repeat(a, 3, 2) if a.shape[2] == 1 else a


def kernel_grid(weight: np.ndarray, cell: int = 24, max_out: int = 16, max_in: int = 16) -> np.ndarray:
    """Filters (O, I, k, k) as a picture on one scale for the whole layer: mid-grey is 0, brighter
    positive, darker negative (so a faint tile is a weak filter, not stretched to full contrast).
    Colour tiles when I is 3, grey when 1 (up to 64 filters, in a square grid); else one row per
    filter and one column per input channel, the first `max_out` × `max_in` (square: 32 × 16
    tiles of 3×3 came out as a tall strip that the app showed 100 px wide)."""
    w = np.asarray(weight, np.float32)
    w = 0.5 + 0.5 * w / (np.abs(w).max() + 1e-8)                   # [-max, max] → [0, 1]
    if w.shape[1] in (1, 3):
        tiles = w[:64].transpose(0, 2, 3, 1).repeat(3 // w.shape[1], axis=3)   # (O, k, k, 3)
        cols = int(np.ceil(np.sqrt(len(tiles))))
        rows = int(np.ceil(len(tiles) / cols))
        cells = [(divmod(i, cols), t) for i, t in enumerate(tiles)]
    else:
        w = w[:max_out, :max_in]
        rows, cols = w.shape[:2]
        cells = [((o, i), w[o, i][..., None].repeat(3, axis=2)) for o in range(rows) for i in range(cols)]
    grid = np.full((rows * (cell + 2) + 2, cols * (cell + 2) + 2, 3), 255, np.uint8)
    for (r, c), t in cells:
        y, x = 2 + r * (cell + 2), 2 + c * (cell + 2)
        grid[y:y + cell, x:x + cell] = cv2.resize((t * 255).round().astype(np.uint8), (cell, cell),
                                                  interpolation=cv2.INTER_NEAREST).reshape(cell, cell, 3)
    return grid


def neighbour_correlation(weight: np.ndarray) -> float:
    """How smooth filters (..., k, k) are: the correlation of each weight with its right and lower
    neighbours. About 0 for noise; edge and blob detectors (smooth patterns) score far higher."""
    w = np.asarray(weight, np.float64)
    a = np.concatenate([w[..., :, :-1].ravel(), w[..., :-1, :].ravel()])
    b = np.concatenate([w[..., :, 1:].ravel(), w[..., 1:, :].ravel()])
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def feature_grid(maps: np.ndarray, cell: int = 64) -> np.ndarray:
    """Feature maps (C, H, W) as a grid of grayscale tiles, each normalised on its own."""
    return filter_grid(np.asarray(maps)[:, None], cell=cell)


def gallery(images: list[np.ndarray], preds: list[np.ndarray], gts: list[np.ndarray], captions: list[str],
            cols: int = 6, size: int = 128) -> np.ndarray:
    """Tiles with ground truth (green) and prediction (red) points; for best/worst galleries."""
    tiles = []
    for im, p, g, cap in zip(images, preds, gts, captions):
        s = size / max(im.shape[:2])
        t = cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s)))
        t = np.ascontiguousarray(cv2.cvtColor(t, cv2.COLOR_GRAY2RGB) if t.ndim == 2 else t)
        for pts, col in ((g, (0, 255, 0)), (p, (255, 0, 0))):
            for x, y in np.asarray(pts) * s:
                cv2.circle(t, (int(round(x)), int(round(y))), 1, col, -1)
        cv2.putText(t, cap, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        pad = np.zeros((size, size, 3), np.uint8)
        pad[: t.shape[0], : t.shape[1]] = t
        tiles.append(pad)
    while len(tiles) % cols:
        tiles.append(np.zeros((size, size, 3), np.uint8))
    rows = [np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)]
    return np.concatenate(rows, 0)


def ced_plot(curves: dict[str, np.ndarray], threshold: float = 0.08) -> np.ndarray:
    """Cumulative error distribution for one or more models: {label: per-face NME (fractions)}."""
    from fkd.metrics import auc, ced

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for label, nmes in curves.items():
        x, y = ced(nmes, threshold)
        ax.plot(100 * x, y, label=f"{label} (AUC {100 * auc(nmes, threshold):.1f})")
    ax.set_xlabel("NME (%, inter-ocular)"), ax.set_ylabel("fraction of faces"), ax.set_ylim(0, 1)
    ax.grid(alpha=0.3), ax.legend(loc="lower right")
    return _fig_to_array(fig)


def point_error_plot(point_nme: list[float], mean_shape: np.ndarray | None = None) -> np.ndarray:
    """Per-landmark error as a bar chart: which points are hard (jaw, brows...)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(range(len(point_nme)), point_nme, color="tab:red")
    ax.set_xlabel("landmark index"), ax.set_ylabel("NME %"), ax.set_xlim(-1, len(point_nme))
    ax.set_title("validation error per landmark")
    return _fig_to_array(fig)


def save_png(path, rgb: np.ndarray) -> None:
    """Write an RGB picture (the format from the extension); OSError if nothing was written, as
    cv2.imwrite only returns False (unwritable place) or raises cv2.error (unknown extension)."""
    try:
        ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:
        raise OSError(f"{path}: cannot write a picture with this extension (use .png or .jpg)") from None
    if not ok:
        raise OSError(f"{path}: could not write the picture")
