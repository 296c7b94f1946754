"""Turn whatever a user hands us (path, bytes, PIL, numpy) into an RGB uint8 array, or say why not.

Every entry point (library, CLIs, app) goes through `load_image`, so bad input gets one clear
message everywhere instead of a different stack trace per caller.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_FILE_BYTES = 50 * 1024 * 1024      # refuse files over 50 MB before decoding anything
MAX_PIXELS = 16_000 * 16_000           # PIL's bomb guard: above this we refuse
MAX_SIDE = 4096                        # sane but huge photos are downscaled to this longest side
MAX_ASPECT = 100                       # long side / short side: a thinner strip cannot hold a face, and
                                       # shrunk for the detectors (long side a few hundred px) it has 0 rows

ImageLike = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]
Image.MAX_IMAGE_PIXELS = MAX_PIXELS    # PIL raises past twice this; open_image refuses past it, with the size


class ImageError(ValueError):
    """An input that is not a usable image; the message is meant for the user."""


def _open(src: ImageLike) -> Image.Image:
    if isinstance(src, Image.Image):
        return src
    if isinstance(src, bytes):
        if not src:
            raise ImageError("the file is empty (0 bytes)")
        if len(src) > MAX_FILE_BYTES:
            raise ImageError(f"the file is too large ({len(src) / 2**20:.0f} MB, limit {MAX_FILE_BYTES // 2**20} MB)")
        return Image.open(io.BytesIO(src))
    return Image.open(checked_file(src))


def checked_file(src: str | os.PathLike, kind: str = "image", max_bytes: int = MAX_FILE_BYTES) -> Path:
    """The path, if it is a file worth opening: else an ImageError that says what is wrong with it."""
    path = Path(src)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    size = path.stat().st_size
    if size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes)")
    if size > max_bytes:
        raise ImageError(f"{path}: the file is too large ({size / 2**20:.0f} MB, limit {max_bytes // 2**20} MB)")
    return path


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits by the actual range instead of clipping to white.
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent pixels become white, not black: a cut-out face on white looks like a photo.
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")  # L, P, CMYK, YCbCr, F, 1 ...


def array_to_rgb(a: np.ndarray) -> np.ndarray:
    """Numpy image (H,W), (H,W,1), (H,W,3) or (H,W,4), uint8/uint16/float → RGB uint8 (H,W,3)."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or min(a.shape[:2]) < 1:
        raise ImageError(f"expected an image array of shape (H,W), (H,W,3) or (H,W,4), got {a.shape}")
    if a.dtype == np.uint16:
        a = (a / 257.0).round().astype(np.uint8)
    elif a.dtype.kind == "f":
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        a = (a[:, :, :3] * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(a)


def load_image(src: ImageLike, max_side: int = MAX_SIDE) -> np.ndarray:
    """Load any image as RGB uint8 (H, W, 3), upright (EXIF applied), longest side ≤ `max_side`.

    Raises ImageError with a message fit for a user for anything that is not a usable image.
    Animated images give their first frame. Huge images are downscaled, not rejected, unless
    they exceed the decompression-bomb limit.
    """
    return load_image_sized(src, max_side)[0]


def open_image(src: ImageLike) -> Image.Image:
    """The image opened from its header, nothing decoded yet; an ImageError for a file that is no
    image or holds over MAX_PIXELS (a 438-KB PNG of 400 megapixels took 8 s and 1.2 GB to decode)."""
    name = f"{src}: " if isinstance(src, (str, os.PathLike)) else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # sized below, in its pixels
            im = _open(src)
    except ImageError:
        raise
    except Image.DecompressionBombError:  # over twice MAX_PIXELS: PIL gives no size
        raise ImageError(f"{name}the image is too large to open safely (over {2 * MAX_PIXELS / 1e6:.0f} megapixels)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}not an image file (or a format we cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{name}the image file is damaged or truncated ({e})") from None
    if im.width * im.height > MAX_PIXELS:
        raise ImageError(f"{name}the image is too large ({im.width}×{im.height} pixels; at most "
                         f"{MAX_PIXELS / 1e6:.0f} megapixels)")
    check_shape(im.width, im.height, name)
    return im


def check_shape(w: int, h: int, name: str = "") -> None:
    """An ImageError for a picture too thin to hold a face: one side over MAX_ASPECT times the other."""
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageError(f"{name}the image is {w}×{h} pixels: too thin to hold a face (one side is over "
                         f"{MAX_ASPECT} times the other)")


def load_image_sized(src: ImageLike, max_side: int = MAX_SIDE) -> tuple[np.ndarray, tuple[int, int]]:
    """`load_image` plus the upright (width, height) of the original, to map points back to it."""
    if isinstance(src, np.ndarray):
        a = array_to_rgb(src)
        check_shape(a.shape[1], a.shape[0])
        return _limit_side(a, max_side), (a.shape[1], a.shape[0])
    name = f"{src}: " if isinstance(src, (str, os.PathLike)) else ""
    im = open_image(src)  # its size checked from the header
    try:
        im.seek(0)  # first frame of animated GIF/WebP/TIFF
        full = im.size[::-1] if (im.getexif().get(0x0112, 1) in (5, 6, 7, 8)) else im.size
        if max(im.size) > 2 * max_side and im.format == "JPEG":
            im.draft("RGB", (max_side, max_side))  # decode huge JPEGs at reduced size: fast, little memory
        im = ImageOps.exif_transpose(im)
        im.load()
        rgb = _to_rgb(im)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{name}the image file is damaged or truncated ({e})") from None
    a = np.asarray(rgb, dtype=np.uint8)
    if min(a.shape[:2]) < 1:
        raise ImageError(f"{name}the image is empty")
    return _limit_side(np.ascontiguousarray(a), max_side), (int(full[0]), int(full[1]))


def _limit_side(a: np.ndarray, max_side: int) -> np.ndarray:
    h, w = a.shape[:2]
    if max(h, w) <= max_side:
        return a
    s = max_side / max(h, w)
    im = Image.fromarray(a).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
    return np.asarray(im)


def writable(folder: Path) -> bool:
    """The folder exists (made if need be) and takes a new file: the CLIs ask before the work starts,
    so that a typo in an output path does not cost a long run."""
    import tempfile
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def files_under(folder: str | os.PathLike, suffixes: tuple[str, ...], skip_hidden: bool = True) -> list[Path]:
    """The files under `folder` whose suffix (lower-cased) is one of `suffixes`, sorted, through
    symlinked subfolders too (`Path.rglob` does not follow them before Python 3.13: a data folder
    made of links to the real ones looked empty). A folder reached twice (a link beside it, or back
    up the tree) is listed once, under its real path where both are siblings: real folders are walked
    before links, so a link never takes a folder's files (the 300-W split is by path). skip_hidden:
    leave out hidden files and folders (.git, .ipynb_checkpoints copies, macOS's ._ files)."""
    out, walked = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in walked:
            dirs[:] = []
            continue
        walked.add(real)
        dirs[:] = sorted((d for d in dirs if not (skip_hidden and d.startswith("."))),
                         key=lambda d: (os.path.islink(os.path.join(root, d)), d))
        out += [Path(root, f) for f in files
                if Path(f).suffix.lower() in suffixes and not (skip_hidden and f.startswith("."))]
    return sorted(out)
