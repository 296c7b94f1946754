"""Video files in and out: frames from any video ffmpeg reads, browser-playable mp4 and looping GIF out.

    fps, frames = read_video("clip.mov")            # frames: an iterator of RGB uint8 (H, W, 3)
    write_mp4("out.mp4", frames, fps)               # any iterable: frames are streamed, not held
    write_gif("out.gif", list_of_frames, fps)

imageio with its ffmpeg plugin does the work (the ffmpeg binary ships in the imageio-ffmpeg wheel).
A file that is not a video raises `fkd.ImageError` with a message for a person, as images do.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from fkd.io import ImageError, checked_file

MAX_VIDEO_BYTES = 2 * 2**30   # a file this large is a mistake, not a clip to annotate


class _NoRotationNotice(logging.Filter):
    """imageio-ffmpeg warns that a phone video's frames come out turned (w×h read from an h×w
    source): that is ffmpeg turning them upright, which is what we want; every other message stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("The frame size for reading")


logging.getLogger("imageio_ffmpeg").addFilter(_NoRotationNotice())


def read_video(path: str | Path) -> tuple[float, Iterator[np.ndarray]]:
    """(frames per second, iterator of RGB uint8 frames). Errors a person can act on are ImageError.

    ffmpeg reads the file by its content (any extension) and turns phone videos upright; it is asked
    for frames at exactly the rate returned, so frame i is at i / fps seconds also in a video whose
    frame rate varies (where ffmpeg would otherwise repeat frames at a higher rate)."""
    import imageio_ffmpeg

    path = checked_file(path, "video", MAX_VIDEO_BYTES)
    meta = _probe(path)
    fps, expected = meta["fps"], meta["fps"] * (meta.get("duration") or 0.0)
    gen = imageio_ffmpeg.read_frames(str(path), output_params=["-r", f"{fps:.6g}"])
    try:
        w, h = next(gen)["size"]
    except Exception as e:  # ffmpeg accepted the file a moment ago: say what it says now
        gen.close()
        raise ImageError(f"{path}: cannot be read as a video ({first_line(e)})") from None

    def frames() -> Iterator[np.ndarray]:
        n = 0
        try:
            for buf in gen:
                n += 1
                yield np.frombuffer(buf, np.uint8).reshape(h, w, 3).copy()
        except (OSError, RuntimeError) as e:  # a damaged file: what was read stands, the caller says where it stopped
            raise ImageError(f"{path}: the video is damaged and stops early ({first_line(e)})") from None
        finally:
            gen.close()
        # a file cut short (a copy that did not finish) decodes without an error, up to the cut: compare
        # with the length its header gives (a sound track a little longer than the picture is no cut)
        if expected - n > max(fps, 0.2 * expected):
            raise ImageError(f"{path}: the video stops early ({n} of about {expected:.0f} frames: the file may be cut short)")

    return fps, frames()


def _probe(path: Path) -> dict:
    """ffmpeg's description of the video stream (fps, size, duration), or an ImageError."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(gen)
    except Exception:  # imageio-ffmpeg raises OSError / RuntimeError ("Could not load meta information")
        raise ImageError(f"{path}: cannot be read as a video (not a video file, or a format ffmpeg does not know)") from None
    finally:
        gen.close()
    if not 0 < (meta.get("fps") or 0) < 1000:
        raise ImageError(f"{path}: cannot be read as a video (no frame rate)")
    return meta


def first_line(e: Exception) -> str:
    """The first non-empty line of an error's message (ffmpeg's come with its whole log)."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    return lines[0] if lines else type(e).__name__


def even_size(image: np.ndarray) -> np.ndarray:
    """Crop one row/column if needed: h264 in yuv420p needs even width and height."""
    h, w = image.shape[:2]
    return image[: h - h % 2, : w - w % 2]


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Browser-playable H.264 (yuv420p) without imageio's silent resize to multiples of 16. Frames are
    streamed to ffmpeg as they come, so a long video is never held in memory."""
    import imageio.v2 as imageio

    with imageio.get_writer(str(path), format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1, quality=7,
                            ffmpeg_log_level="error", output_params=["-preset", "veryfast"]) as w:  # 3× faster, same size
        for f in frames:
            w.append_data(even_size(f))
    return Path(path)


GIF_SIDE = 256         # pixels: a GIF's longer side (a 512² morph GIF of 94 frames would be ~10 MB)
GIF_MIN_DELAY_CS = 2   # browsers play a GIF frame shorter than 2/100 s for 1/10 s: 60 fps came out 6× slow


def gif_plan(n_frames: int, fps: float, max_frames: int = 240) -> tuple[int, list[int]]:
    """(step, delay of each kept frame in ms) for a GIF of `n_frames` at `fps`: every frame while
    there are at most `max_frames` and fps ≤ 50, else every step-th. GIF delays are whole 1/100 s,
    so 24 fps cannot be 41.7 ms a frame: delays of 40 and 50 ms alternate so that each frame shows
    at its own time (rounded), and the GIF lasts as long as the video (one delay for all frames
    made 24 fps into 25, or with every 2nd frame kept, 12.5)."""
    step = max(1, int(np.ceil(n_frames / max_frames)), int(np.ceil(GIF_MIN_DELAY_CS * fps / 100 - 1e-9)))
    kept = len(range(0, n_frames, step))
    ends = [round((i + 1) * step * 100 / fps) for i in range(kept)]   # in 1/100 s
    return step, [10 * (e - b) for b, e in zip([0] + ends[:-1], ends)]


def write_gif(path: str | Path, frames: list[np.ndarray], fps: float, max_side: int = GIF_SIDE, max_frames: int = 240) -> Path:
    """Looping GIF, downscaled to `max_side`, of every frame in order at the video's speed (thinned
    only past `max_frames` or 50 fps, see `gif_plan`; GIFs get big).

    One palette for the whole clip, fitted on a few frames spread over it: ~10× faster than a palette
    per frame, smaller, and the colours do not flicker from frame to frame.
    """
    from PIL import Image

    step, delays = gif_plan(len(frames), fps, max_frames)
    frames = frames[::step]
    h, w = frames[0].shape[:2]
    s = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if s < 1 else f for f in frames]
    picks = sorted({round(i) for i in np.linspace(0, len(small) - 1, min(5, len(small)))})
    palette = Image.fromarray(np.concatenate([small[i] for i in picks], 1)).quantize(256, method=Image.Quantize.MEDIANCUT)
    ims = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG) for f in small]
    # disposal 1 and no optimisation: Pillow would merge identical frames (a there-and-back's ends)
    # into one longer frame, and the GIF would hold fewer frames than the video
    ims[0].save(str(path), save_all=True, append_images=ims[1:], duration=delays, loop=0, optimize=False, disposal=1)
    return Path(path)


def write_mp4_and_gif(folder: Path, stem: str, frames: list[np.ndarray], fps: float, gif: bool = True,
                      log: logging.Logger | None = None) -> tuple[Path, Path | None]:
    """`<stem>.mp4` and (with `gif`) `<stem>.gif` of the same frames, encoded side by side: Pillow
    makes the GIF in this process while ffmpeg makes the mp4 in its own (2 cores). When the mp4
    fails, a GIF error is logged too (the caller sees the mp4's), not lost with it."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        gif_file = pool.submit(write_gif, folder / f"{stem}.gif", frames, fps) if gif else None
        try:
            video = write_mp4(folder / f"{stem}.mp4", frames, fps)
        except Exception:
            if gif_file is not None and gif_file.exception() is not None:
                (log or logging.getLogger(__name__)).error("the GIF failed too", exc_info=gif_file.exception())
            raise
    return video, gif_file.result() if gif_file is not None else None
