"""fkd demo: facial keypoints you can see, on any photo, live on a webcam or a video, inside the network, as a morph.

    python app.py                  # http://127.0.0.1:7860 (a CPU Hugging Face Space runs it unchanged)

Named endpoints for scripts (gradio_client):
    from gradio_client import Client, handle_file
    c = Client("http://127.0.0.1:7860")
    image, result = c.predict(handle_file("me.jpg"), "auto", "face68", api_name="/keypoints")
    video = c.predict(handle_file("a.jpg"), handle_file("b.jpg"), 48, 24, api_name="/morph")
    grid = c.predict("face68", api_name="/filters")
    drawn, points = c.predict(handle_file("clip.mp4"), "face68", 0.5, api_name="/video")   # first 20 s

Runs offline on weights/ (the landmark models and the MediaPipe face detector ship there) and
never imports training code. Landmarkers load lazily, once per model, and are only read from;
everything a user sends or gets back lives in per-request temporary folders or per-session state.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
from gradio_image_annotation import image_annotator
from PIL import Image, UnidentifiedImageError

from fkd import filters, media, morph, results, video, viz
from fkd.io import ImageError, load_image, load_image_sized, open_image
from fkd.landmarker import Face, Landmarker, WeightsError, check_box, face_side
from fkd.stream import Tracker
from fkd.weights import WEIGHTS_DIR, graph_paths, read_card
from fkd.zoo import DEFAULT_MODEL, MODELS

# -----------------------------------------------------------------------------------------------
# settings (environment variables override them, e.g. on a bigger Space)
ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
REPORTS = WEIGHTS_DIR / "reports"
CONCURRENCY = int(os.environ.get("FKD_CONCURRENCY", "2"))      # events of one kind at once (2 vCPU Space)
DISPLAY_SIDE = 1280          # annotated photos bigger than this are shrunk for the browser (JSON stays full size)
DISPLAY_MIN_SIDE = 720       # and in the UI smaller ones are drawn enlarged to this (the API draws them at their size)
ANNOTATOR_SIDE = 1024        # the box-drawing canvas: bigger photos are shrunk to this
ANNOTATOR_HEIGHT = 420       # and smaller ones enlarged to this height, so that there is room to draw
NUMBERS_MIN_SIDE = 150       # display pixels: a smaller face gets no point numbers (68 would cover it)
SUMMARY_ROWS = 12            # faces listed under the photo; a crowd's others are in the points table and JSON
MORPH_SIZE = 512             # morph frames are MORPH_SIZE² (even: h264 wants even sizes)
MORPH_MODEL = DEFAULT_MODEL  # morphing needs the 68-point layout (eyes, mouth corners)
PHOTO_FLIP_TEST = True       # photos: every face averaged with a mirrored pass (~2 ms more per face, 0.05 % NME less)
LIVE_FLIP_TEST = "auto"      # webcam: the mirrored pass only for faces the model doubts (Landmarker's default)
VIDEO_MAX_S = 20.0           # uploaded videos: the first 20 s (~10-25 ms a frame on one core, plus encoding)
# per-request folders for downloads and result images, inside Gradio's temp dir (GRADIO_TEMP_DIR)
TMP_ROOT = Path(gr.utils.get_upload_folder()) / f"fkd_app_{os.getpid()}"
TMP_MAX_AGE_S = 3600
QUEUE_KW = dict(default_concurrency_limit=CONCURRENCY, max_size=64)
LAUNCH_KW = dict(max_file_size="20mb", theme=gr.themes.Soft(primary_hue="teal"), show_error=False,
                 # the faces table scrolls on a phone instead of breaking its words letter by letter
                 css=".fkd-intro p {margin: 0.2em 0} #kp-summary table {display: block; overflow-x: auto} "
                     "#kp-summary th, #kp-summary td {word-break: normal; overflow-wrap: normal; white-space: nowrap}",
                 footer_links=["api", "gradio"])

log = logging.getLogger("fkd.app")


def model_choices() -> list[tuple[str, str]]:
    """(label, name) per model in MODELS, in its order: the short name (a description of 60
    characters was cut at "…the most accurc" in the webcam tab's row, and on a phone), with the
    default and models whose weights are not there yet marked."""
    return [(m + (" (default)" if m == DEFAULT_MODEL else "")
             + ("" if (WEIGHTS_DIR / f"{m}.safetensors").exists() else " (no weights yet)"), m) for m in MODELS]


def model_info(model: str) -> str:
    return MODELS.get(model, "")


def model_dropdown(elem_id: str | None = None) -> gr.Dropdown:
    """The model picker of every tab: short names in the list, the chosen one's description under it."""
    model = gr.Dropdown(model_choices(), value=DEFAULT_MODEL, label="Model", info=model_info(DEFAULT_MODEL),
                        min_width=200, elem_id=elem_id)
    model.change(lambda m: gr.update(info=model_info(m)), model, model, queue=False, show_progress="hidden",
                 api_visibility="private")
    return model


# -----------------------------------------------------------------------------------------------
# shared, read-only: one Landmarker per model, loaded on first use

_LANDMARKERS: dict[str, Landmarker] = {}
_LM_LOCK = threading.Lock()


def get_landmarker(name: str) -> Landmarker:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; pick one of {', '.join(MODELS)}")
    with _LM_LOCK:  # two first requests must not load the same model twice
        if name not in _LANDMARKERS:
            _LANDMARKERS[name] = Landmarker(name)
        return _LANDMARKERS[name]


class UserError(gr.Error):
    """A message for the user: a toast in the browser, and no traceback in the server's log (Gradio
    prints one for every gr.Error, so a user's empty click filled the log with them)."""

    def __init__(self, message: str):
        super().__init__(message, print_exception=False)


def user_errors(fn):
    """Errors a user can fix become a gr.Error with a plain message; anything else is logged, not shown."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ImageError, ValueError, WeightsError) as e:
            raise UserError(_clean(str(e), *args)) from None
        except Exception:
            log.exception("unexpected error in %s", fn.__name__)
            raise UserError("Something went wrong on our side; the error was logged. Please try another file.") from None
    return wrapper


def _clean(msg: str, *inputs) -> str:
    """No server paths in messages: uploads are named by their file name, repo files relative to the repo."""
    for x in inputs:
        if isinstance(x, str) and os.sep in x:
            msg = msg.replace(x, Path(x).name)
    return msg.replace(str(ROOT) + os.sep, "")


class CheckedImage(gr.Image):
    """gr.Image whose upload is checked on arrival: a file that is no image gives a message, not a crash.

    (gr.Image opens the upload with PIL before our code runs; a text file renamed .jpg would
    otherwise raise there.) `is_template` keeps the frontend of gr.Image.
    """
    is_template = True

    def preprocess(self, payload):
        name = getattr(payload, "orig_name", None) or "the upload"
        try:
            if getattr(payload, "path", None):  # the header first: gr.Image decodes all of a 400-MP PNG (8 s)
                with open_image(payload.path):
                    pass
            return super().preprocess(payload)
        except ImageError as e:
            raise UserError(str(e).replace(f"{payload.path}: ", f"{name}: ")) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):  # decoding what the header allowed
            raise UserError(f"{name}: not an image file (or a format we cannot read)") from None


class ResultImage(gr.Image):
    """Output gr.Image whose arrays go to a private file, named after the label.

    Gradio caches an array under a content hash with a plain write, so two users getting the same
    picture at once (the same example, the filters every visitor loads) could download a
    half-written file; a file of our own is served as it is.
    """
    is_template = True

    def postprocess(self, value):
        if isinstance(value, np.ndarray):
            name = re.sub(r"[^a-z0-9]+", "_", (self.label or "image").lower()).strip("_")[:40] or "image"
            path = new_dir() / f"{name}.{self.format}"
            Image.fromarray(value).save(path)
            value = str(path)
        return super().postprocess(value)


def on_run(button: gr.Button, fn, inputs: list, outputs: list, **kw):
    """`button` runs `fn` after emptying its outputs, so that an error does not leave the last
    input's results on show as if they were this one's."""
    button.click(lambda: [None] * len(outputs), None, outputs, queue=False, show_progress="hidden",
                 api_visibility="private").then(fn, inputs, outputs, api_visibility="private", **kw)


def new_dir() -> Path:
    """A fresh private folder (no clean-up scan: this runs for every webcam frame)."""
    TMP_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=TMP_ROOT))


def request_dir() -> Path:
    """A fresh private folder for one request's downloads; folders older than an hour are removed."""
    fresh = new_dir()
    now = time.time()
    for d in TMP_ROOT.iterdir():
        try:
            if now - d.stat().st_mtime > TMP_MAX_AGE_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass
    return fresh


# -----------------------------------------------------------------------------------------------
# 1. keypoints on a photo

NO_PHOTO = "Add a photo first: upload one, paste it, take one with the webcam or click an example."


@dataclass
class PhotoResult:
    """The photo on show and its faces, kept per session (gr.State) so that the checkboxes redraw it
    without running the model again."""
    shown: np.ndarray          # the display copy (≤ DISPLAY_SIDE, ≥ DISPLAY_MIN_SIDE)
    faces: list[Face]          # in the original photo's pixels
    size: tuple[int, int]      # the original photo's (W, H)
    model: str
    drawn: bool                # the boxes are the user's


def detect_keypoints(path: str | None, model: str, boxes=None, boxes_width: int | None = None
                     ) -> tuple[np.ndarray, list[Face], tuple[int, int]]:
    """(RGB as loaded (≤ 4096 px), faces in *original* pixels, original (W, H)). Boxes in original
    pixels, or in those of a copy `boxes_width` pixels wide (the box-drawing canvas)."""
    if not path:
        raise UserError(NO_PHOTO)
    lm = get_landmarker(model)
    rgb, (W, H) = load_image_sized(path)
    s = W / rgb.shape[1]  # > 1 when a huge photo was downscaled on loading
    if boxes is not None:
        if boxes_width:  # the canvas's boxes (float arrays) → original pixels
            boxes = [b * (W / boxes_width) for b in boxes]
        boxes = [check_box(b, W, H) / s for b in boxes]
    faces = lm.predict(rgb, boxes=boxes, flip_test=PHOTO_FLIP_TEST)
    if s != 1.0:
        gr.Info(f"Large photo ({W}×{H}): worked on a copy {rgb.shape[1]}×{rgb.shape[0]}; points are in full-size pixels.")
    return rgb, [viz.scaled(f, s) for f in faces], (W, H)


def draw_result(res: PhotoResult, numbers: bool, contours: bool) -> tuple[np.ndarray, str]:
    """(the drawing, the faces table under it) for the checkboxes' settings."""
    lm = get_landmarker(res.model)
    drawing, unnumbered = viz.annotate_photo(res.shown, res.faces, res.size[0], numbers=numbers,
                                             contours=lm.layout.contours if contours else (),
                                             numbers_min_side=NUMBERS_MIN_SIDE)
    summary = faces_summary(res.faces, res.model, res.drawn)
    if unnumbered:
        n = len(res.faces)
        which = "the face" if n == 1 else f"all {n} faces" if unnumbered == n else f"{unnumbered} of the {n} faces"
        summary += (f"\n\nPoint numbers are left out on {which}: under {NUMBERS_MIN_SIDE} px in the picture, they "
                    "would hide the face. The points table (under *Points table, JSON and downloads*) numbers every point.")
    return drawing, summary


def faces_summary(faces: list[Face], model: str, drawn: bool = False) -> str:
    """The table under the photo. A confidence below the one that drops detector boxes (0.8:
    labelled faces score 0.97 or more, boxes beside a face 0.36 at the median) is flagged."""
    lm = get_landmarker(model)
    return results.faces_table(faces, MODELS.get(model, model), has_confidence=lm.has_confidence,
                               min_confidence=lm.min_confidence, drawn=drawn, max_rows=SUMMARY_ROWS)


@user_errors
def keypoints_api(image: str | None, box_mode: str = "auto", model: str = DEFAULT_MODEL, boxes: str = ""):
    """Keypoints of every face (box_mode "auto": MediaPipe finds them) or of the given boxes ("draw":
    `boxes` = JSON [[x0, y0, x1, y1], ...] in image pixels). Returns the annotated image and the JSON."""
    given = results.parse_boxes(boxes) if box_mode == "draw" else None
    if box_mode == "draw" and given is None:
        raise UserError("Box mode 'draw' needs boxes: JSON [[x0, y0, x1, y1], ...] in image pixels.")
    rgb, faces, size = detect_keypoints(image, model, given)
    if not faces:
        gr.Warning("No face found in this photo.")
    contours = get_landmarker(model).layout.contours
    drawing = viz.annotate_photo(viz.display_copy(rgb, DISPLAY_SIDE), faces, size[0], contours=contours)[0]
    return drawing, results.image_record(faces, Path(image).name, size, model)


@user_errors
def keypoints_ui(image, box_mode, model, numbers, contours, annotation=None):
    """(drawing, faces table, points table, downloads, JSON, the PhotoResult for redrawing)."""
    if not image:
        raise UserError(NO_PHOTO)  # before the boxes: there is nothing to draw on yet
    boxes, canvas_w = results.annotation_boxes(annotation) if box_mode == "draw" else (None, None)
    rgb, faces, size = detect_keypoints(image, model, boxes, canvas_w)
    if not faces:
        gr.Warning("No face found. Try 'draw' mode and mark the face with a box.")
    res = PhotoResult(viz.display_copy(rgb, DISPLAY_SIDE, DISPLAY_MIN_SIDE), faces, size, model, boxes is not None)
    record = results.image_record(faces, Path(image).name, size, model)
    files = results.write_downloads(request_dir(), Path(image).stem[:40] or "photo", faces, record) if faces else None
    return (*draw_result(res, numbers, contours), results.points_table(faces),
            [str(f) for f in files] if files else None, record, res)


@user_errors
def redraw_ui(res: PhotoResult | None, numbers: bool, contours: bool):
    """The checkboxes changed: the last result drawn again (no model run); nothing on show, nothing to do."""
    if not isinstance(res, PhotoResult):
        return gr.skip(), gr.skip()
    return draw_result(res, numbers, contours)


def rerun_ui(res: PhotoResult | None, image, box_mode, model, numbers, contours, annotation=None):
    """The model changed: run it again on the photo on show; before a first run, nothing happens."""
    if not isinstance(res, PhotoResult) or res.model == model or not image:
        return (gr.skip(),) * 6
    return keypoints_ui(image, box_mode, model, numbers, contours, annotation)


@user_errors
def show_annotator(box_mode, image):
    """In draw mode, put the current photo (shrunk) on the box-drawing canvas."""
    if box_mode != "draw":
        return gr.update(visible=False)
    if not image:
        return gr.update(visible=True, value=None)
    rgb = load_image(image)
    k = min(ANNOTATOR_SIDE / max(rgb.shape[:2]), max(1.0, ANNOTATOR_HEIGHT / rgb.shape[0]))
    return gr.update(visible=True, value={"image": viz.resize(rgb, k), "boxes": []})


def create_keypoints_tab(ui_fn, api_fn, annotator_fn, redraw_fn, rerun_fn, examples: list[str]):
    last = gr.State(None)  # per session: the result on show, redrawn when a checkbox changes
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            image = CheckedImage(label="Photo", type="filepath", image_mode=None, height=360,
                                 sources=["upload", "webcam", "clipboard"])
            box_mode = gr.Radio([("auto: find every face (MediaPipe)", "auto"), ("draw: I mark the faces", "draw")],
                                value="auto", label="Face boxes")
            annotation = image_annotator(label="Drag to draw one box per face", visible=False, sources=[], elem_id="kp-canvas",
                                         label_list=["face"], label_colors=[(0, 160, 140)], image_type="numpy",
                                         use_default_label=True, show_clear_button=False, height=ANNOTATOR_HEIGHT)
            model = model_dropdown()
            with gr.Row():
                # numbers off by default: 68 of them pile up over the eyes and the mouth
                numbers = gr.Checkbox(value=False, label="point numbers", elem_id="kp-numbers")
                contours = gr.Checkbox(value=True, label="connecting contours", elem_id="kp-contours")
            run = gr.Button("Find keypoints", variant="primary")
            boxes = gr.Textbox(value="", visible=False, label="boxes (JSON, for draw mode over the API)")
        with gr.Column(scale=6):
            out = ResultImage(label="Keypoints", type="numpy", format="png", interactive=False, height=480, elem_id="kp-out")
            summary = gr.Markdown(elem_id="kp-summary")
            with gr.Accordion("Points table, JSON and downloads", open=False):
                files = gr.File(label="Downloads: .pts per face, JSON, CSV (one row per face)", file_count="multiple",
                                interactive=False)
                table = gr.Dataframe(headers=["face", "point", "x", "y"], datatype=["number"] * 4, interactive=False,
                                     max_height=300, label="Points (original-image pixels, 0-based)")
                result = gr.JSON(label="Keypoints JSON")
    outputs = [out, summary, table, files, result, last]
    gr.Examples([[p, "auto", DEFAULT_MODEL, numbers.value, contours.value] for p in examples], [image, box_mode, model, numbers, contours],
                outputs, fn=ui_fn, run_on_click=True, cache_examples=False, visible_columns=[0], label="Examples (click one)")

    for trigger in (box_mode.change, image.change):
        # a photo that is no image fails before annotator_fn runs: empty the canvas, not keep the last photo
        trigger(annotator_fn, [box_mode, image], annotation, api_visibility="private", show_progress="hidden").failure(
            lambda: None, None, annotation, api_visibility="private", show_progress="hidden", queue=False)
    on_run(run, ui_fn, [image, box_mode, model, numbers, contours, annotation], outputs)
    for box in (numbers, contours):  # a drawing, no model run: at once
        box.change(redraw_fn, [last, numbers, contours], [out, summary], api_visibility="private", show_progress="hidden")
    model.change(rerun_fn, [last, image, box_mode, model, numbers, contours, annotation], outputs, api_visibility="private")
    gr.Button(visible=False).click(api_fn, [image, box_mode, model, boxes], [out, result], api_name="keypoints")


# -----------------------------------------------------------------------------------------------
# 2. live webcam

class LiveSession:
    """Per-browser-session webcam state (lives in gr.State): the stream's tracker and frame timing."""

    def __init__(self):
        self.tracker = Tracker(flip_test=LIVE_FLIP_TEST)  # paced search + One-Euro smoothing (fkd.stream)
        self.last = None          # time of the previous frame
        self.rate = None          # frames per second received, smoothed
        self.model = None
        self.clock = time.monotonic  # seconds; a test can give the session its own clock

    def tick(self, now: float) -> float | None:
        if self.last is not None and now > self.last:
            r = 1.0 / (now - self.last)
            self.rate = r if self.rate is None else 0.8 * self.rate + 0.2 * r
        self.last = now
        return self.rate


def live_step(frame: np.ndarray | None, model: str, strength: float, state: LiveSession | None,
              contours: bool = True) -> tuple[np.ndarray | None, str, LiveSession]:
    """One webcam frame: detect, landmarks, smooth over time (One-Euro), draw. Pure apart from `state`."""
    state = state if isinstance(state, LiveSession) else LiveSession()
    if frame is None:
        return None, "", state
    t0 = time.perf_counter()
    lm = get_landmarker(model)
    if state.model != model:
        state.tracker.reset()
        state.model = model
    state.tracker.strength = strength
    faces = state.tracker(lm, frame, state.clock)
    out = viz.draw_faces(frame, faces, contours=lm.layout.contours if contours else ())
    ms = 1000 * (time.perf_counter() - t0)
    rate = state.tick(state.clock())
    shown = f"{rate:.1f} frames/s shown" if rate else "starting…"
    return out, f"**on the server** · **{shown}** · {ms:.0f} ms per frame on the server · {len(faces)} face(s)", state


@user_errors
def live_ui(frame, model, strength, contours, state):
    out, text, state = live_step(frame, model, strength, state, contours)
    return out, text, state


def annotate_video(path: str | None, model: str, strength: float, contours: bool = True,
                   progress=None) -> tuple[str, str, str]:
    """An uploaded video through the webcam's pipeline (fkd.video): (drawn mp4, JSON file, summary).
    Frames are shrunk to DISPLAY_SIDE and only the first VIDEO_MAX_S seconds are done: a phone's 4K
    minute would hold a worker for many minutes."""
    if not path:
        raise UserError("Add a video first.")
    lm = get_landmarker(model)
    fps, frames = media.read_video(path)
    n = int(VIDEO_MAX_S * fps)
    first = next(frames, None)
    if first is None:
        raise UserError("The video has no frames.")
    k = viz.shrink(first, DISPLAY_SIDE)[1]   # the same for every frame
    frames = (viz.shrink(f, DISPLAY_SIDE)[0] for f in islice(chain([first], frames), n))
    d = request_dir()
    t0 = time.perf_counter()
    tick = (lambda i: progress((i + 1, n), desc="frames")) if progress is not None else None
    records, error = video.annotate(lm, frames, fps, d / "keypoints.mp4", strength, LIVE_FLIP_TEST,
                                    lm.layout.contours if contours else (), tick, scale=1 / k)
    if not records:
        raise UserError(error or "The video has no frames.")
    h, w = first.shape[:2]  # the points are in the video's own pixels; the drawn video is shrunk by k
    (d / "keypoints.json").write_text(results.dumps({"video": Path(path).name, "fps": fps, "width": w, "height": h,
                                                     "frames": records}, indent=None))
    faces = sum(bool(r["faces"]) for r in records)
    text = (f"**{len(records)} frames** ({len(records) / fps:.1f} s at {fps:g} fps), {faces} with a face, "
            f"in {time.perf_counter() - t0:.1f} s")
    if len(records) == n:
        text += f" · only the first {VIDEO_MAX_S:g} s are done here (`python -m fkd.video` does whole videos)"
    if error:
        text += f" · the video is damaged after frame {len(records)}: {_clean(error, path)}"
    return str(d / "keypoints.mp4"), str(d / "keypoints.json"), text


@user_errors
def video_ui(path, model, strength, contours, progress=gr.Progress()):
    return annotate_video(path, model, strength, contours, progress)


@user_errors
def video_api(video: str | None, model: str = DEFAULT_MODEL, smoothing: float = 0.5) -> tuple[str, str]:
    """Keypoints on every frame of a video (its first 20 s): (drawn mp4, per-frame JSON)."""
    return annotate_video(video, model, smoothing)[:2]


# The live mode in the browser (static/live.js): the exported graphs (python -m fkd.export, weights/onnx/<model>.onnx
# + .onnx.json) run by onnxruntime-web, faces found by MediaPipe's BlazeFace, both vendored from npm under
# static/vendor/ (its README: versions, sizes, how to update). The app only serves these files.
STATIC = ROOT / "static"
IN_BROWSER, ON_SERVER = "in your browser", "on the server"
LIVE_HTML = """<div class="fkd-live">
<div class="fkd-stage"><video muted playsinline></video><canvas class="fkd-overlay"></canvas></div>
<div class="fkd-bar"><button class="fkd-live-start" type="button">Start the camera</button>
<span class="fkd-live-status" id="live-browser-status">loading…</span></div></div>"""
# the stage is shown mirrored, as Gradio's webcam shows it (video and points together: the points stay right)
LIVE_CSS = """.fkd-stage {position: relative; max-width: 640px; background: #111; border-radius: 6px; overflow: hidden;
  transform: scaleX(-1)}
.fkd-stage video {display: block; width: 100%; min-height: 120px}
.fkd-stage canvas {position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none}
.fkd-live.fkd-server .fkd-stage {display: none}
.fkd-bar {display: flex; gap: 0.8em; align-items: center; margin-top: 0.5em; flex-wrap: wrap}
.fkd-live-start {padding: 0.4em 1em; border-radius: 6px; background: var(--button-primary-background-fill);
  color: var(--button-primary-text-color); border: none; cursor: pointer}
.fkd-live-start:disabled {opacity: 0.6}"""
LIVE_JS = """const cfg = props.config;
import(new URL(cfg.script, location.href).href).then((m) => m.mount(element, cfg)).catch((e) => {
  element.querySelector('.fkd-live-status').textContent = 'the live mode could not load: ' + e;
  const r = document.querySelector('#live-mode input[value="' + cfg.server_choice + '"]');
  if (r && !r.checked) r.click();
});"""


def static_url(path: Path) -> str:
    """The app-relative address Gradio serves a file under `gr.set_static_paths` from."""
    return f"gradio_api/file={Path(path).resolve().as_posix()}"


def graph_urls(onnx: Path, side: Path) -> dict:
    return {"onnx": static_url(onnx), "json": static_url(side)}


def live_browser_config(strength: float = 0.5, contours: bool = True) -> dict:
    """What static/live.js needs: where the files are, and the numbers it shares with fkd (one source)."""
    from dataclasses import asdict

    from fkd.detect import BLAZEFACE
    from fkd.landmarker import Settings
    from fkd.layouts import LAYOUTS
    from fkd.stream import DETECT_EVERY_S

    vendor = {name: max(STATIC.glob(f"vendor/{name}@*"), default=None) for name in ("onnxruntime-web", "mediapipe-tasks-vision")}

    def shipped(name: str | None) -> tuple[Path, ...]:
        """The graph and its sidecar of a model, where both ship; () otherwise."""
        paths = graph_paths(name) if name else ()
        return paths if paths and all(p.exists() for p in paths) else ()

    # each model's files and its locator's, when its card names one (Landmarker.locate); without the
    # vendored runtime none: the page says so and streams to the server
    files = {m: (shipped(m), shipped(read_card(m).get("locator"))) for m in MODELS} if all(vendor.values()) else {}
    graphs = {m: graph_urls(*model) | ({"locator": graph_urls(*locator)} if locator else {})
              for m, (model, locator) in files.items() if model}
    gr.set_static_paths([STATIC, BLAZEFACE] + [p for m in graphs for pair in files[m] for p in pair])
    return {"script": static_url(STATIC / "live.js"), "graphs": graphs, "model": DEFAULT_MODEL,
            "vendor": {"ort": static_url(vendor["onnxruntime-web"]) + "/" if graphs else "",
                       "mediapipe": static_url(vendor["mediapipe-tasks-vision"]) + "/" if graphs else ""},
            "detector": static_url(BLAZEFACE), "min_score": 0.5, "detect_every_s": DETECT_EVERY_S,
            "settings": {k: v for k, v in asdict(Settings()).items() if k != "turns"},
            "contour_lines": [list(c) for c in LAYOUTS["ibug68"].contours], "colors": [list(c) for c in viz.COLORS],
            "strength": strength, "contours": contours, "server_choice": ON_SERVER}


def show_server(mode: str):
    return gr.update(visible=mode == ON_SERVER)


def live_setting(value) -> None:
    """Nothing: a setting of the browser's live mode is read by its js (an event with no function at
    all would have no name for the tests that list the app's events)."""


def create_live_tab(fn, video_fn=None, video_api_fn=None):
    gr.Markdown("Press **Start the camera**: your browser finds the faces and their keypoints on every frame, at "
                "camera speed, and nothing leaves it. Where it cannot (no WebAssembly, no camera for the page), each "
                "frame goes to the server instead. The points are smoothed over time so they hold still: move the "
                "slider to trade steadiness for lag.")
    config = live_browser_config()
    mode = gr.Radio([IN_BROWSER, ON_SERVER], value=IN_BROWSER if config["graphs"] else ON_SERVER,
                    label="Where the model runs", elem_id="live-mode")
    gr.HTML(html_template=LIVE_HTML, css_template=LIVE_CSS, js_on_load=LIVE_JS, config=config, elem_id="live-browser")
    state = gr.State(None)  # per session: each visitor has their own smoother
    with gr.Row(visible=mode.value == ON_SERVER) as server:
        cam = gr.Image(label="Webcam", sources=["webcam"], streaming=True, type="numpy", height=360)
        out = ResultImage(label="Keypoints", type="numpy", interactive=False, height=360)
    with gr.Row():
        model = model_dropdown("live-model")
        strength = gr.Slider(0, 1, value=0.5, step=0.05, label="Smoothing (0 = raw)")
        contours = gr.Checkbox(value=True, label="connecting contours")
    fps = gr.Markdown(elem_id="live-status")
    cam.stream(fn, [cam, model, strength, contours, state], [out, fps, state], stream_every=0.1, time_limit=600,
               concurrency_limit=max(4, CONCURRENCY), api_visibility="private", show_progress="hidden")
    # the browser's live mode takes its settings in the page (the js), as they change
    mode.change(show_server, mode, server, js="(m) => { window.fkdLive && window.fkdLive.setMode(m); return m; }",
                queue=False, api_visibility="private", show_progress="hidden")
    for box, key in ((model, "model"), (strength, "strength"), (contours, "contours")):
        box.change(live_setting, box, None, js=f"(v) => {{ window.fkdLive && window.fkdLive.set({{{key}: v}}); return v; }}",
                   queue=False, api_visibility="private", show_progress="hidden")
    if video_fn is None:
        return
    gr.Markdown("**Or a video file:** the same pipeline on every frame (the first "
                f"{VIDEO_MAX_S:g} s, shrunk to {DISPLAY_SIDE} px), with the model and smoothing above.")
    with gr.Row():
        clip = gr.Video(label="Video", sources=["upload"], height=320, elem_id="video-in")
        clip_out = gr.Video(label="Keypoints (mp4)", interactive=False, height=320, autoplay=True, elem_id="video-out")
    with gr.Row():
        run = gr.Button("Put keypoints on the video", variant="primary")
        points = gr.File(label="Every frame's points (JSON)", interactive=False)
    summary = gr.Markdown(elem_id="video-status")
    on_run(run, video_fn, [clip, model, strength, contours], [clip_out, points, summary],
           concurrency_limit=1, concurrency_id="video")  # one video at a time: it holds a core for seconds
    gr.Button(visible=False).click(video_api_fn, [clip, model, strength], [clip_out, points], api_name="video",
                                   concurrency_limit=1, concurrency_id="video")


# -----------------------------------------------------------------------------------------------
# 3. filters and feature maps

@user_errors
def filters_api(model: str = DEFAULT_MODEL):
    """The learned first-layer convolution filters of `model` as an image grid."""
    return viz.kernel_grid(convs_of(model)[0].weight, cell=48)


FILTERS_MAX = 16          # layer 2: the first 16 filters × 16 input channels (a square, readable at 300 px)
SMOOTH_BELOW = 0.3       # neighbour correlation under which the text says the tiles look like noise


def convs_of(model: str) -> list[filters.Conv]:
    """The first two convolutions of a model of the lineup, read once (numpy, no torch)."""
    get_landmarker(model)  # an unknown or damaged model says so here
    return _convs(model)


_convs = functools.cache(filters.first_convs)


@user_errors
def filters_ui(model):
    """(layer 1 grid, layer 2 grid, what they show): also why tiles that look like noise do."""
    convs = convs_of(model)
    grids = [viz.kernel_grid(c.weight, cell=48 if c.weight.shape[1] <= 3 else 20,
                             max_out=FILTERS_MAX, max_in=FILTERS_MAX) for c in convs[:2]]
    o, i = convs[1].weight.shape[:2]
    shown = "all shown" if o <= FILTERS_MAX and i <= FILTERS_MAX else \
        f"the first {min(o, FILTERS_MAX)} × {min(i, FILTERS_MAX)} of {o} × {i} shown"
    text = f"**Layer 1:** {convs[0].describe()}. **Layer 2:** {convs[1].describe()}" + (
        f" (rows: filters, columns: input channels; {shown})." if i > 3 else ".")
    text += " One scale per layer: grey is 0, lighter positive, darker negative, so a faint tile is a weak filter."
    r = viz.neighbour_correlation(convs[0].weight)
    if r < SMOOTH_BELOW:
        k = convs[0].weight.shape[-1]
        text += (f"\n\nLayer 1's tiles look like noise, and that is what they hold: neighbouring weights correlate "
                 f"r = {r:.2f} (0 for noise; smooth edge or blob detectors, as big networks trained on millions of photos "
                 f"grow, come near 1). {k}×{k} filters this model learned from scratch on a few thousand faces did not "
                 "settle into smooth patterns; the feature maps below show what they respond to all the same.")
    return grids[0], grids[1], text


@user_errors
def feature_maps_api(image: str | None, model: str = DEFAULT_MODEL):
    """First-layer feature maps of `model` on the input crop of the face in `image` the model is surest of."""
    return feature_maps(image, model)[1]


@user_errors
def feature_maps_ui(image, model):
    if not image:  # photo cleared: clear the outputs, no error
        return None, None
    return feature_maps(image, model)


def feature_maps(image, model) -> tuple[np.ndarray, np.ndarray]:
    if not image:
        raise UserError("Add a photo first (or click an example).")
    lm = get_landmarker(model)
    rgb = load_image(image)
    faces = lm.predict(rgb, flip_test=False, small_faces=False)  # a turned head too, levelled as the model sees it
    if not faces:
        raise UserError("No face found in this photo, so there is no model input to show.")
    x = lm.input_of(rgb, max(faces, key=lambda f: (f.confidence, f.score)))  # the surest face, not the leftmost
    maps = filters.conv2d(x[0], convs_of(model)[0])  # (C, h, w): before BN/activation
    crop = viz.input_picture(x[0])
    crop = cv2.resize(crop, (crop.shape[1] * 2, crop.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
    return crop, viz.feature_grid(maps[:64], cell=64)


def create_filters_tab(filters_fn, filters_api_fn, maps_fn, maps_api_fn, examples: list[str]):
    gr.Markdown("What the network learned to look for first: each small tile is one convolution filter "
                "(light = positive weights, dark = negative). Below, the first layer's responses to the face in your photo that the "
                "model is surest of, cropped as following it in a video would (its landmark box, levelled).")
    model = model_dropdown()
    info = gr.Markdown()
    with gr.Row():
        conv1 = ResultImage(label="Layer 1 filters", type="numpy", interactive=False, height=300)
        conv2 = ResultImage(label="Layer 2 filters", type="numpy", interactive=False, height=300)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            image = CheckedImage(label="Photo", type="filepath", image_mode=None, height=260,
                                 sources=["upload", "webcam", "clipboard"])
        crop = ResultImage(label="Model input (surest face)", type="numpy", interactive=False, height=260, scale=2)
        maps = ResultImage(label="Layer 1 feature maps", type="numpy", interactive=False, height=420, scale=3)
    gr.Examples([[p] for p in examples], [image], label="Examples (click one)")
    model.change(filters_fn, model, [conv1, conv2, info], api_visibility="private")
    for trigger in (image.change, model.change):  # a new photo or model: new feature maps
        trigger(maps_fn, [image, model], [crop, maps], api_visibility="private")
    gr.Button(visible=False).click(filters_api_fn, model, conv1, api_name="filters")
    gr.Button(visible=False).click(maps_api_fn, [image, model], maps, api_name="feature_maps")
    return model, (conv1, conv2, info)


# -----------------------------------------------------------------------------------------------
# 4. morph

NO_MORPH_FACE = ("No face found in {which}. Use a photo in which one face looks into the camera, whole and not too "
                 "small (a portrait or passport-style photo works best), then press Morph again.")


def largest_face(path: str | None, which: str) -> tuple[np.ndarray, np.ndarray]:
    """(RGB as loaded, 68 keypoints in its pixels) of the largest face in a photo; clear errors otherwise."""
    if not path:
        raise UserError(f"Add {which} first.")
    rgb = load_image(path)
    # the largest face: the whole picture's pass finds it; small_faces (tiles, and the full-range
    # model beside a close face) would only add small ones
    faces = get_landmarker(MORPH_MODEL).predict(rgb, flip_test=PHOTO_FLIP_TEST, small_faces=False)
    if not faces:
        raise UserError(NO_MORPH_FACE.format(which=which))
    if len(faces) > 1:
        gr.Info(f"{which.capitalize()} has {len(faces)} faces: morphing the largest.")
    f = max(faces, key=face_side)  # by its points: a full-range detector box can be twice the face
    return rgb, f.keypoints


def make_morph(path_a, path_b, n_frames, fps, back, gif: bool = True):
    """(triangulation of photo 1, of photo 2, mp4 path, GIF path or None when `gif` is False, what
    the two files hold)."""
    n_frames, fps = int(np.clip(n_frames, 2, 240)), float(np.clip(fps, 1, 60))
    img_a, pts_a = largest_face(path_a, "photo 1")
    img_b, pts_b = largest_face(path_b, "photo 2")
    a, pa, b, pb = morph.align_pair(img_a, pts_a, img_b, pts_b, MORPH_SIZE)
    tris = morph.triangulate(morph.with_border((pa + pb) / 2, MORPH_SIZE, MORPH_SIZE))
    frames = morph.morph_frames(a, pa, b, pb, n_frames, tris)
    if back:
        frames = morph.there_and_back(frames)
    video, gif_file = media.write_mp4_and_gif(request_dir(), "morph", frames, fps, gif, log)
    return (morph.draw_triangulation(a, pa, tris), morph.draw_triangulation(b, pb, tris), str(video),
            str(gif_file) if gif_file else None, morph_text(len(frames), fps, back))


def morph_text(n: int, fps: float, back: bool) -> str:
    """What the mp4 and the GIF hold: the GIF is smaller, and thinned only past what a GIF can play."""
    step, delays = media.gif_plan(n, fps)
    text = f"**{n} frames at {fps:g} fps** ({n / fps:.1f} s{', there and back' if back else ''}). "
    side = min(MORPH_SIZE, media.GIF_SIDE)
    if step == 1:
        return text + f"The GIF holds the same {n} frames at the same speed, at {side}×{side} px (a smaller copy)."
    return text + (f"The GIF is a smaller preview, {side}×{side} px: one frame in {step} ({len(delays)} frames), "
                   "as long as the video (a GIF plays at most 50 frames a second).")


@user_errors
def morph_api(image_1: str | None, image_2: str | None, frames: float = 48, fps: float = 24, there_and_back: bool = False):
    """Morph face 1 into face 2: aligned, triangulated on 68 keypoints, cross-dissolved. Returns an mp4 (h264)."""
    return make_morph(image_1, image_2, frames, fps, there_and_back, gif=False)[2]  # the API returns the video only


def morph_ui(image_1, image_2, frames, fps, there_and_back):
    """The tab's outputs; a problem is one message in the status line, not an error on each output."""
    try:
        return user_errors(make_morph)(image_1, image_2, frames, fps, there_and_back)
    except gr.Error as e:
        return None, None, None, None, f"⚠ **{e.message}**"


def create_morph_tab(ui_fn, api_fn, examples: list[list[str]]):
    gr.Markdown(f"Two faces → 68 keypoints each → both aligned into one {MORPH_SIZE}×{MORPH_SIZE} frame → "
                "triangles between the points (and the frame's corners) → each triangle warped and the colours "
                "blended, frame by frame.")
    with gr.Row():
        a = CheckedImage(label="Photo 1", type="filepath", image_mode=None, height=280, sources=["upload", "webcam", "clipboard"],
                         elem_id="morph-a")
        b = CheckedImage(label="Photo 2", type="filepath", image_mode=None, height=280, sources=["upload", "webcam", "clipboard"],
                         elem_id="morph-b")
    with gr.Row():
        frames = gr.Slider(2, 120, value=48, step=1, label="Frames")
        fps = gr.Slider(1, 60, value=24, step=1, label="Frames per second")
        back = gr.Checkbox(value=True, label="There and back (loops smoothly)")
    run = gr.Button("Morph", variant="primary")
    with gr.Row():
        tri_a = ResultImage(label="Photo 1, aligned, with triangles", type="numpy", interactive=False, height=320)
        tri_b = ResultImage(label="Photo 2, aligned onto photo 1", type="numpy", interactive=False, height=320)
        video = gr.Video(label="Morph (mp4)", format=None, autoplay=True, loop=True, height=320, interactive=False,
                         elem_id="morph-video")
    status = gr.Markdown(elem_id="morph-status")
    gif = gr.File(label=f"Download the GIF (a {media.GIF_SIDE}×{media.GIF_SIDE} copy of the video)", interactive=False)
    gr.Examples(examples, [a, b], label="Example pairs (click one, then Morph)")
    on_run(run, ui_fn, [a, b, frames, fps, back], [tri_a, tri_b, video, gif, status], concurrency_limit=1,
           concurrency_id="morph")
    gr.Button(visible=False).click(api_fn, [a, b, frames, fps, back], video, api_name="morph",
                                   concurrency_limit=1, concurrency_id="morph")


# -----------------------------------------------------------------------------------------------
# 5. training

def _table(d: dict, head: tuple[str, str], names: dict | None = None) -> str:
    rows = [f"| {(names or {}).get(k, k)} | {v} |" for k, v in d.items() if not isinstance(v, (dict, list))]
    return f"| {head[0]} | {head[1]} |\n|---|---|\n" + "\n".join(rows) if rows else ""


METRIC_NAMES = {"faces": "validation faces", "nme_mean": "NME mean (% inter-ocular)", "nme_median": "NME median (%)",
                "fr8": "failure rate (% of faces with NME > 8 %)", "auc8": "AUC at 8 % (×100)", "mae_px": "mean abs error (px, model input)",
                "mean_dist_px": "mean distance (px, model input)"}


TRAINING_NAMES = {"train_faces": "training faces", "val_faces": "validation faces", "split": "validation split",
                  "wall_time_s": "wall time (s)", "lr": "learning rate"}


def _picture(image: np.ndarray | None, missing: str):
    """A report picture, or in its place a line that says it was not recorded (not an empty box)."""
    return gr.update(value=image, visible=image is not None), gr.update(value=missing, visible=image is None)


@user_errors
def training_ui(model: str):
    try:
        card = read_card(model)
    except WeightsError as e:
        return f"**{MODELS.get(model, model)}:** {_clean(str(e))}", None, *_picture(None, ""), *_picture(None, "")
    name = card.get("name", model)
    hist = card.get("history") or []
    parts = [f"### {card.get('part', name)}"]
    if card.get("val_metrics"):
        parts += [_table(card["val_metrics"], ("validation, one pass", ""), METRIC_NAMES)]
    else:
        parts.append("No validation metrics in the model card yet.")
    if card.get("training"):
        t = {k: v for k, v in card["training"].items() if k in ("data", "split", "train_faces", "val_faces", "epochs",
                                                                  "batch", "lr", "optimizer", "wall_time_s", "device")}
        parts += [_table(t, ("training", ""), TRAINING_NAMES)]
    curves = viz.loss_curves(hist, name) if hist else _png(f"{name}_curves.png")
    if curves is None:
        parts.append("No training history recorded for these weights yet.")
    points = viz.point_error_plot(card["val_point_nme"]) if card.get("val_point_nme") else _png(f"{name}_points.png")
    single = card.get("layout") == "nose"
    return ("\n\n".join(parts), curves,
            *_picture(_png(f"{name}_gallery.png"), "*Best and worst validation faces: " + (
                "not drawn for a single point.*" if single else "not recorded for these weights.*")),
            *_picture(points, "*Error per landmark: " + ("one point only, see the table.*" if single else
                                                          "not recorded for these weights.*")))


def _png(name: str) -> np.ndarray | None:
    """A report picture as RGB (arrays, not paths: nothing outside the temp folders is served)."""
    p = REPORTS / name
    im = cv2.imread(str(p), cv2.IMREAD_COLOR) if p.is_file() else None
    return None if im is None else cv2.cvtColor(im, cv2.COLOR_BGR2RGB)


def create_training_tab(fn):
    gr.Markdown("How each model was trained, read from its model card (weights/*.json) and the report "
                "pictures written at the end of training (weights/reports/).")
    model = model_dropdown()
    with gr.Row(equal_height=False):
        summary = gr.Markdown()
        curves = ResultImage(label="Loss curves", type="numpy", interactive=False, height=320)
    # the pictures' own labels would cover their top-left corner (the gallery's captions): headings instead
    gr.Markdown("**Best and worst validation faces** (green: truth, red: prediction)")
    gallery = ResultImage(label="Best and worst validation faces", show_label=False, type="numpy", interactive=False)
    no_gallery = gr.Markdown(visible=False)
    gr.Markdown("**Error per landmark**")
    points = ResultImage(label="Error per landmark", show_label=False, type="numpy", interactive=False)
    no_points = gr.Markdown(visible=False)
    outputs = [summary, curves, gallery, no_gallery, points, no_points]
    model.change(fn, model, outputs, api_visibility="private")
    return model, tuple(outputs)


# -----------------------------------------------------------------------------------------------
# the app

def _examples() -> tuple[list[str], list[list[str]]]:
    order = ["helen_1466887621_1.jpg", "helen_1238081332_1.jpg", "breakingbad.jpg", "helen_2232426029_1.jpg"]
    singles = [str(EXAMPLES / n) for n in order if (EXAMPLES / n).is_file()]
    faces = [p for p in singles if "breakingbad" not in p]
    pairs = [[faces[i], faces[(i + 1) % len(faces)]] for i in range(len(faces))] if len(faces) > 1 else []
    return singles, pairs


INTRO = """# fkd · facial keypoints
Find facial keypoints in any photo (68 with the 300-W model, 58 with IMM, or just the nose tip), follow them
live on your webcam or through a video, look at what the network's first layers learned, and morph one face into another.
Everything runs on CPU. Photos are processed for your request only; download files are deleted within the hour."""


def build_demo() -> gr.Blocks:
    examples, pairs = _examples()
    with gr.Blocks(title="fkd: facial keypoints", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(INTRO, elem_classes="fkd-intro")
        with gr.Tabs():
            with gr.Tab("Keypoints"):
                create_keypoints_tab(keypoints_ui, keypoints_api, show_annotator, redraw_ui, rerun_ui, examples)
            with gr.Tab("Webcam & video"):
                create_live_tab(live_ui, video_ui, video_api)
            with gr.Tab("Filters"):
                f_model, f_out = create_filters_tab(filters_ui, filters_api, feature_maps_ui, feature_maps_api, examples)
            with gr.Tab("Morph"):
                create_morph_tab(morph_ui, morph_api, pairs)
            with gr.Tab("Training"):
                t_model, t_out = create_training_tab(training_ui)
        demo.load(filters_ui, f_model, list(f_out), api_visibility="private")
        demo.load(training_ui, t_model, list(t_out), api_visibility="private")
    return demo


demo = build_demo()

def delete_cached_files(blocks: gr.Blocks) -> None:
    """Remove the uploads and results this server cached: users' photos must not outlive it.
    (Gradio's `delete_cache` only ages them out while running and does not on shutdown.)"""
    cache = Path(gr.utils.get_upload_folder()).resolve()
    for files in blocks.temp_file_sets:
        for f in list(files):
            if not Path(f).resolve().is_relative_to(cache):  # never anything outside Gradio's cache
                continue
            Path(f).unlink(missing_ok=True)
            try:
                Path(f).parent.rmdir()  # the per-file hash folder, when empty
            except OSError:
                pass
    shutil.rmtree(TMP_ROOT, ignore_errors=True)


def _graceful_exit(signum, frame) -> None:
    raise KeyboardInterrupt  # Gradio's launch() then closes the server and returns to our `finally`


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _graceful_exit)  # `kill`, docker stop, a Space restart
    try:
        demo.queue(**QUEUE_KW).launch(**LAUNCH_KW)
    finally:
        delete_cached_files(demo)
