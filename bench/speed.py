"""fkd and dlib side by side on one pinned core: 68 points for a face with a given box, and a whole frame.

    pip install -r requirements-bench.txt    # dlib, bench-only (see that file for --no-deps)
    python bench/speed.py [--model face68] [--rounds 9] [--core 1] [--out bench/speed_report.md]
    ONEDNN_MAX_CPU_ISA=AVX2 python bench/speed.py --backend openvino --out bench/speed_report_avx2.md

The second line plays an AVX2-only CPU on a bfloat16 one: OpenVINO's kernels stop at AVX2 and compute
in float32 (on a real AVX2 CPU "auto" picks ONNX Runtime, which took as long in float32). MediaPipe's
detector and dlib are not capped, so only the face and track rows play that CPU.

Both run in this one process, every thread of it pinned to one core (`--core`, default the last
one), with one thread each (`Landmarker(threads=1)`, OMP_NUM_THREADS=1; dlib's HOG and shape
predictor use one), so they meet the same machine. On a shared 2-core machine the time of one thing
moves by 30 % from one minute to the next, so the jobs are taken in short rounds, in turns (the order
flips every round), and reported as the median over rounds of each round's median, and the quietest
round (other load only ever adds time); below the table, the mean of the calls too (the calls that take
a second pass pull it up). The jobs, on the 300-W validation split:
- face: 68 points for each validation face in the same square box for both, 1.1× its landmark box
  (fkd: `predict(img, boxes=[b], flip_test=False)`, the locator's pass placing the crop; and the same
  with `Settings(locate=False)`, the box's own crop and a second pass on the crop of its points;
  dlib: `shape_predictor(img, rect)` alone, without turning its points into an array: the cheapest
  dlib call there is); and each in its own detector's box, found before the clock starts (fkd: the
  `Detection` of `Landmarker.detect`, whose face points place the crop; dlib: HOG's rectangle,
  upsampled once), on the faces both detectors find;
- frame: a 640×480 frame with one face (a validation photo scaled into it, padded), found + 68 points
  (fkd: `predict(frame, flip_test=False, small_faces=False)`, as video frames are read: BlazeFace short
  range, and full range only where no face is close, its face points placing the crop; the same with
  the locator placing it instead (`Settings(marks=False)`), and with neither; and as a photo is read,
  both models always; dlib: HOG detector without upsampling + shape predictor on each box);
- track: the next frame (the same one moved by 3, 2 px), the face followed from the last frame's
  points without the detector (`Landmarker.track`, fkd only).
Also: the model pass alone, the detector alone, passes per face (`Landmarker.passes`), and the NME of
both on the face job's boxes (dlib's points are whole pixels).
"""
from __future__ import annotations

import os

# one thread for every pool (numpy's BLAS, OpenMP in dlib or OpenCV): set before they load
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import counting, cpu_name, report_path, webcam_frame  # noqa: E402
from fkd.data import DATA_DIR, find_300w, split_300w  # noqa: E402
from fkd.detect import Detection  # noqa: E402
from fkd.geometry import landmark_box  # noqa: E402
from fkd.io import load_image  # noqa: E402
from fkd.landmarker import Landmarker, Settings  # noqa: E402
from fkd.metrics import nme  # noqa: E402
from fkd.runtime import isa_cap  # noqa: E402
from fkd.zoo import DEFAULT_MODEL  # noqa: E402
from training.calibrate import nearest  # noqa: E402

HERE = Path(__file__).resolve().parent
BOX_SCALE = 1.1           # the face job's box: this many times the landmark box's longer side, square
FRAME = (640, 480)        # pixels, width × height: the frame job's frame
FRAME_REPEATS = 3         # calls per frame per round
TRACK_SHIFT = (3.0, 2.0)  # pixels: how far the face moves to the next frame


def pin(core: int) -> None:
    """Every thread of this process (MediaPipe, OpenVINO and OpenCV start their own) on `core`."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), {core})
        except OSError:
            pass  # a thread that ended meanwhile
    os.sched_setaffinity(0, {core})


def square_box(points: np.ndarray, scale: float = BOX_SCALE) -> np.ndarray:
    """The square box `scale` × the landmark box's longer side, on its centre (x0, y0, x1, y1)."""
    b = landmark_box(points)
    c, half = (b[:2] + b[2:]) / 2, scale * float((b[2:] - b[:2]).max()) / 2
    return np.r_[c - half, c + half].astype(np.float32)


def ms_each(calls) -> tuple[float, float]:
    """Median and mean milliseconds of the calls (each a no-argument function), each timed once."""
    out = []
    for fn in calls:
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return 1000 * float(np.median(out)), 1000 * float(np.mean(out))


def dlib_model_path() -> Path:
    """The 68-point model in face-recognition-models, found without importing the package (its
    __init__ needs pkg_resources, gone from setuptools 81)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        sys.exit("dlib's 68-point model is missing: pip install -r requirements-bench.txt (see that file)")
    return Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--backend", default="auto", help="the Landmarker's backend (auto: the fastest here)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--frames", type=int, default=30, help="640×480 frames with one face (validation photos)")
    p.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)), help="the CPU core both run on")
    p.add_argument("--data", type=Path, default=DATA_DIR)
    p.add_argument("--out", type=report_path, default=HERE / "speed_report.md")
    a = p.parse_args()
    import dlib

    pin(a.core)
    root = a.data / "300w"
    records, _ = find_300w(root)
    _, val = split_300w(records, root)
    photos = {r.image: load_image(r.image) for r in val}
    faces = [(photos[r.image], square_box(r.points), r.points) for r in val]

    lm = Landmarker(a.model, backend=a.backend, threads=1)
    two_pass = Landmarker(a.model, backend=a.backend, threads=1, settings=Settings(locate=False, marks=False))
    located = Landmarker(a.model, backend=a.backend, threads=1, settings=Settings(marks=False))
    predictor = dlib.shape_predictor(str(dlib_model_path()))
    hog = dlib.get_frontal_face_detector()
    rects = [dlib.rectangle(*(int(round(float(v))) for v in b)) for _, b, _ in faces]
    # each tool's own detector's box, found once (not timed): the faces both detectors find
    found_by = []  # (image, BlazeFace's detection with its face points, HOG's rectangle, labelled points)
    for im, _, g in faces:
        target = landmark_box(g)
        det = nearest(lm.detect(im), target)
        rect = nearest([Detection(np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32), 1.0)
                        for r in hog(im, 1)], target)
        if det is not None and rect is not None:
            found_by.append((im, det, dlib.rectangle(*(int(v) for v in rect.box)), g))

    # frames: validation photos in which BlazeFace sees exactly one face (each detection costs a pass)
    frames = []
    for im in photos.values():
        f = webcam_frame(im, FRAME, fill=114)
        if len(lm.detect(f)) == 1:
            frames.append(f)
        if len(frames) == a.frames:
            break
    shift = np.float32([[1, 0, TRACK_SHIFT[0]], [0, 1, TRACK_SHIFT[1]]])
    nexts = [cv2.warpAffine(f, shift, FRAME, borderMode=cv2.BORDER_REPLICATE) for f in frames]
    last = [lm.predict(f, flip_test=False) for f in frames]
    x = lm.cut(faces[0][0], lm.box_crops([faces[0][1]]))
    xl = lm.locator.cut(faces[0][0], lm.locator.box_crops([faces[0][1]])) if lm.locator else x

    # accuracy on the face job's boxes, and passes per face / frame / track
    fkd_pts, per_face = counting(lm, lambda f: lm.predict(f[0], boxes=[f[1]], flip_test=False)[0].keypoints, faces)
    two_pts, (per_face_two, _) = counting(
        two_pass, lambda f: two_pass.predict(f[0], boxes=[f[1]], flip_test=False)[0].keypoints, faces)
    dlib_pts = np.stack([np.array([(q.x, q.y) for q in predictor(im, r).parts()], np.float64)
                         for (im, _, _), r in zip(faces, rects)])
    gt = np.stack([g for _, _, g in faces])
    nmes = {"fkd": 100 * nme(np.stack(fkd_pts), gt), "fkd two passes": 100 * nme(np.stack(two_pts), gt),
            "dlib": 100 * nme(dlib_pts, gt)}
    det_pts, per_face_det = counting(lm, lambda f: lm.predict(f[0], boxes=[f[1]], flip_test=False)[0].keypoints,
                                     found_by)
    gt_det = np.stack([g for *_, g in found_by])
    nmes["fkd detected"] = 100 * nme(np.stack(det_pts), gt_det)
    dlib_det = [np.array([(q.x, q.y) for q in predictor(im, r).parts()], np.float64) for im, _, r, _ in found_by]
    nmes["dlib detected"] = 100 * nme(np.stack(dlib_det), gt_det)
    found, per_frame = counting(lm, lambda f: len(lm.predict(f, flip_test=False, small_faces=False)), frames)
    found_fkd = sum(found)
    found_photo = sum(len(lm.predict(f, flip_test=False)) for f in frames)
    found, (per_frame_two, _) = counting(two_pass, lambda f: len(two_pass.predict(f, flip_test=False, small_faces=False)),
                                         frames)
    found_two = sum(found)
    found, per_frame_located = counting(
        located, lambda f: len(located.predict(f, flip_test=False, small_faces=False)), frames)
    found_located = sum(found)
    followed, (per_track, _) = counting(lm, lambda nf: len(lm.track(*nf, flip_test=False)), list(zip(nexts, last)))
    followed = sum(followed)
    found_dlib = sum(len(hog(f, 0)) for f in frames)
    print(f"NME fkd {nmes['fkd'].mean():.2f} (two passes {nmes['fkd two passes'].mean():.2f}) dlib "
          f"{nmes['dlib'].mean():.2f}; passes per face {per_face}, two-pass {per_face_two:.2f}, frame {per_frame}, "
          f"track {per_track:.2f}; faces found in {len(frames)} frames: fkd {found_fkd} (as photos {found_photo}), "
          f"dlib {found_dlib}; followed {followed}", flush=True)

    def dlib_frame(f):
        for r in hog(f, 0):
            predictor(f, r)

    jobs = {  # name -> the calls of one round
        "fkd face": lambda: [lambda im=im, b=b: lm.predict(im, boxes=[b], flip_test=False) for im, b, _ in faces],
        "fkd face, two passes": lambda: [lambda im=im, b=b: two_pass.predict(im, boxes=[b], flip_test=False)
                                         for im, b, _ in faces],
        "dlib face": lambda: [lambda im=im, r=r: predictor(im, r) for (im, _, _), r in zip(faces, rects)],
        "fkd face, detector's box": lambda: [lambda im=im, d=d: lm.predict(im, boxes=[d], flip_test=False)
                                             for im, d, _, _ in found_by],
        "dlib face, detector's box": lambda: [lambda im=im, r=r: predictor(im, r) for im, _, r, _ in found_by],
        "fkd model pass": lambda: [lambda: lm.run(x)] * 300,
        "fkd frame": lambda: [lambda f=f: lm.predict(f, flip_test=False, small_faces=False)
                              for f in frames] * FRAME_REPEATS,
        "fkd frame, two passes": lambda: [lambda f=f: two_pass.predict(f, flip_test=False, small_faces=False)
                                          for f in frames] * FRAME_REPEATS,
        "fkd frame, located": lambda: [lambda f=f: located.predict(f, flip_test=False, small_faces=False)
                                       for f in frames] * FRAME_REPEATS,
        "fkd frame as a photo": lambda: [lambda f=f: lm.predict(f, flip_test=False) for f in frames] * FRAME_REPEATS,
        "dlib frame": lambda: [lambda f=f: dlib_frame(f) for f in frames] * FRAME_REPEATS,
        "fkd detector": lambda: [lambda f=f: lm.detect(f, small_faces=False) for f in frames] * FRAME_REPEATS,
        "fkd detector, both models": lambda: [lambda f=f: lm.detect(f) for f in frames] * FRAME_REPEATS,
        "dlib HOG": lambda: [lambda f=f: hog(f, 0) for f in frames] * FRAME_REPEATS,
        "fkd track": lambda: [lambda n=n, fs=fs: lm.track(n, fs, flip_test=False) for n, fs in zip(nexts, last)]
        * FRAME_REPEATS,
    }
    if lm.locator:
        jobs["fkd locator pass"] = lambda: [lambda: lm.locator.run(xl)] * 300
    for calls in jobs.values():  # warm-up
        ms_each(calls()[:20])
    rounds = {name: [] for name in jobs}  # each round's median ms per call
    means = {name: [] for name in jobs}   # each round's mean
    for r in range(a.rounds):
        pin(a.core)  # threads started since (MediaPipe's graph, OpenVINO's) too
        for name in (list(jobs) if r % 2 == 0 else list(jobs)[::-1]):
            median, mean = ms_each(jobs[name]())
            rounds[name].append(median)
            means[name].append(mean)
        print(f"round {r}: " + ", ".join(f"{n} {v[-1]:.2f}" for n, v in rounds.items()), flush=True)
    lm.close()
    two_pass.close()
    located.close()

    med = {n: float(np.median(v)) for n, v in rounds.items()}
    best = {n: min(v) for n, v in rounds.items()}
    cap = isa_cap()
    cmd = (f"ONEDNN_MAX_CPU_ISA={cap} " if cap else "") + "python bench/speed.py " + " ".join(sys.argv[1:])
    lines = [
        "# fkd and dlib side by side, one pinned core", "",
        f"`{cmd.strip()}` on {time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}, Python {platform.python_version()}, "
        f"model `{a.model}` on {lm.backend}, dlib {dlib.__version__}; everything on core {a.core}, one thread. "
        f"{a.rounds} rounds taken in turns (the order flips each round); ms per call: the median over rounds of "
        "each round's median, and the quietest round. fkd / dlib < 1: fkd is faster: the median of the rounds' "
        "ratios (each round's two times met the same load), and the ratio in the round quietest for the pair.", "",
        "| job | fkd | dlib | fkd / dlib (median of rounds) | fkd / dlib (quietest round) |", "|---|---|---|---|---|"]
    for job, f, d in (("68 points for a face, box given (square, 1.1× the landmark box), "
                       f"{len(faces)} validation faces", "fkd face", "dlib face"),
                      ("the same without the locator (`Settings(locate=False)`)", "fkd face, two passes", "dlib face"),
                      (f"68 points for a face in its detector's box (BlazeFace's with its face points / HOG's), the "
                       f"{len(found_by)} validation faces both find", "fkd face, detector's box",
                       "dlib face, detector's box"),
                      (f"640×480 frame with one face, find + 68 points, {len(frames)} frames "
                       "(as video frames are read)",
                       "fkd frame", "dlib frame"),
                      ("the same, the crop placed by the locator instead of the detector's face points "
                       "(`Settings(marks=False)`)", "fkd frame, located", "dlib frame"),
                      ("the same with neither (`Settings(locate=False, marks=False)`)", "fkd frame, two passes",
                       "dlib frame"),
                      ("the same frames read as photos (both detectors always)", "fkd frame as a photo", "dlib frame"),
                      ("finding the face alone (BlazeFace short, full range where no face is close / HOG)",
                       "fkd detector", "dlib HOG"),
                      ("the same with both BlazeFace models always", "fkd detector, both models", "dlib HOG")):
        ratios = np.array(rounds[f]) / np.array(rounds[d])
        quiet = int(np.argmin(np.array(rounds[f]) + np.array(rounds[d])))
        lines.append(f"| {job} | {med[f]:.2f} ({best[f]:.2f}) | {med[d]:.2f} ({best[d]:.2f}) | "
                     f"{np.median(ratios):.2f} | {ratios[quiet]:.2f} |")
    lines.append(f"| next frame, face followed (`track`, moved {TRACK_SHIFT[0]:g}, {TRACK_SHIFT[1]:g} px) | "
                 f"{med['fkd track']:.2f} ({best['fkd track']:.2f}) | – | – | – |")
    mean = {n: float(np.median(v)) for n, v in means.items()}
    lines += ["", "Quietest round in brackets.", "",
              "- The mean of the calls (a call that takes a second pass or the full-range detector counts its "
              "whole time; the median over rounds of each round's mean): "
              + ", ".join(f"{job} {mean[n]:.2f} ms" for job, n in (
                  ("a face", "fkd face"), ("a frame", "fkd frame"), ("`track`", "fkd track"),
                  ("dlib's face", "dlib face"), ("dlib's frame", "dlib frame"))) + ".",
              f"- fkd's model pass alone (batch 1, the crop ready): {med['fkd model pass']:.2f} ms "
              f"({best['fkd model pass']:.2f})" + (f"; the locator's: {med['fkd locator pass']:.2f} ms "
                                                    f"({best['fkd locator pass']:.2f})." if lm.locator else "."),
              f"- Model passes per face (`Landmarker.passes`): {per_face[0]:.2f} + {per_face[1]:.2f} of the locator "
              f"(face job; without it {per_face_two:.2f}), {per_frame[0]:.2f} + {per_frame[1]:.2f} per frame "
              f"(placed by the locator {per_frame_located[0]:.2f} + {per_frame_located[1]:.2f}, by neither "
              f"{per_frame_two:.2f}), "
              f"{per_track:.2f} per track step.",
              f"- NME % (inter-ocular) on the face job's boxes: fkd {nmes['fkd'].mean():.2f} (FR@8 "
              f"{(nmes['fkd'] > 8).mean() * 100:.1f} %; without the locator {nmes['fkd two passes'].mean():.2f}, "
              f"FR@8 {(nmes['fkd two passes'] > 8).mean() * 100:.1f} %), dlib {nmes['dlib'].mean():.2f} (FR@8 "
              f"{(nmes['dlib'] > 8).mean() * 100:.1f} %); in their detectors' boxes fkd "
              f"{nmes['fkd detected'].mean():.2f} ({per_face_det[0]:.2f} + {per_face_det[1]:.2f} passes a face), "
              f"dlib {nmes['dlib detected'].mean():.2f}. dlib's model was trained on iBUG 300-W, whose training photos "
              "these validation faces are drawn from: its NME is on faces it has likely seen.",
              f"- Faces found in the {len(frames)} frames: fkd {found_fkd} (placed by the locator {found_located}, "
              f"by neither {found_two}, read as photos {found_photo}), "
              f"dlib HOG {found_dlib}.",
              "", "Every round, ms:", "", "| job | " + " | ".join(str(i) for i in range(a.rounds)) + " |",
              "|---|" + "---|" * a.rounds]
    lines += [f"| {n} | " + " | ".join(f"{t:.2f}" for t in v) + " |" for n, v in rounds.items()]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
