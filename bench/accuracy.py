"""Accuracy and speed of the 68-point models side by side, on the fixed 300-W validation split.

    python bench/accuracy.py [--data ../shared/data] [--models ibug68 ibug68_ctx ...] [--rounds 3]

Writes bench/accuracy_report.md (+ bench/ced.png, bench/point_error_<first model>.png; with
`--out accuracy_report_X.md` the figures are ced_X.png and point_error_<model>_X.png, or
point_error_X.png where X is the model) with: NME mean /
median, FR@8 %, AUC@8 % and faces not found for both box protocols (landmark box, MediaPipe: its face
points or its calibrated box placing the crop) with the flip test off, auto (the default: mirrored
only where the model doubts) and on, through MediaPipe without the face points (with and without the
box calibration),
ms per face at 1 and 2 threads and for each flip-test setting on the validation crops, webcam-frame
rate, file sizes, and the first model on head tilts from 0 to 180° (validation photos turned), with
and without the levelling of tilted heads.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import cpu_name, median_ms, report_path  # noqa: E402
from fkd.calibration import IDENTITY  # noqa: E402
from fkd.data import DATA_DIR, find_300w, split_300w  # noqa: E402
from fkd.evaluate import evaluate_records, nearest_face  # noqa: E402
from fkd.geometry import apply_affine, landmark_box, turned_image  # noqa: E402
from fkd.io import load_image, load_image_sized  # noqa: E402
from fkd.landmarker import MODELS, Landmarker, Settings  # noqa: E402
from fkd.metrics import nme, point_nme, summary  # noqa: E402
from fkd.runtime import onnx_available, openvino_bf16, pick_backend  # noqa: E402
from fkd.viz import ced_plot, draw_faces, point_error_plot, save_png  # noqa: E402
from fkd.weights import read_card, resolve  # noqa: E402

HERE = Path(__file__).resolve().parent


# the backend the app and Landmarker() use here ("auto"): it gives the frame time and the headline
FAST = pick_backend("auto", "cpu")
BACKENDS = [b for b, ok in (("openvino", openvino_bf16()), ("onnx", onnx_available()), ("torch", True)) if ok]
LABEL = {"openvino": "OpenVINO", "onnx": "ONNX Runtime", "torch": "torch"}


def val_crops(name: str, val) -> list[tuple[list[np.ndarray], torch.Tensor]]:
    """Each validation face's landmark-box crop as the model takes it: (crop matrices, input)."""
    lm = Landmarker(name, backend="torch")
    out = []
    for r in val:
        rgb, (W, _) = load_image_sized(r.image)
        out.append(lm.model_inputs(rgb, [landmark_box(r.points) * rgb.shape[1] / W], "landmarks"))
    return out


FLIPS = (False, "auto", True)
FLIP_WORD = {False: "off", "auto": "auto", True: "on"}


def flip_ms(lm: Landmarker, crops) -> dict:
    """Mean ms per validation face for each flip-test setting (the median of 3 sweeps over all faces),
    and the share of faces that "auto" mirrors (first-pass confidence below the card's flip_below)."""
    out = {}
    for flip in FLIPS:
        sweeps = []
        for _ in range(3):
            t = time.perf_counter()
            for mats, x in crops:  # one pass, and the mirrored one where the setting asks (as Landmarker does)
                reading = lm.pass_on(x, mats)
                lm.mirror(reading, lm.to_mirror(reading.conf, flip))
            sweeps.append((time.perf_counter() - t) / len(crops))
        out[f"val_{FLIP_WORD[flip]}_ms"] = 1000 * float(np.median(sweeps))
    out["auto_share"] = float(np.mean([lm.run(x)[1][0] < lm.flip_below for _, x in crops]))
    out["flip_below"] = lm.flip_below
    return out


def speed(name: str, rgb: np.ndarray, crops) -> dict:
    out = {}
    for backend in BACKENDS:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            lm = Landmarker(name, backend=backend, threads=threads)
            cfg = lm.cfg
            x = torch.rand(1, cfg.in_channels, cfg.input_h, cfg.input_w).numpy() - 0.5
            out[f"{backend}_{threads}t_ms"] = median_ms(lambda: lm.run(x), n=100 if backend == "torch" else 300)
            if backend == FAST and threads == 1:
                # the flip test (the app's photo tabs): the crop and its mirror, one after the other
                out["flip_1t_ms"] = median_ms(lambda: (lm.run(x), lm.run(x[..., ::-1].copy())), n=300)
                # on the validation faces, whose doubt decides what flip_test="auto" costs
                out.update(flip_ms(lm, crops))
                # the whole webcam frame: detect + crop + landmarks + draw, 640×480, as the app's Live tab
                frame = rgb
                out["frame_1t_ms"] = median_ms(lambda: draw_faces(frame, lm.predict(frame, flip_test="auto"),
                                                                  contours=lm.layout.contours), n=200)
                out["detector_ms"] = median_ms(lambda: lm.detect(frame), n=200)
                # a frame with no face: every detector runs, and the search of turned copies
                out["empty_frame_ms"] = median_ms(lambda: lm.predict(EMPTY), n=50)
            lm.close()
    torch.set_num_threads(2)
    return out


# a 640×480 frame with no face in it: smooth noise, like a blurred room
EMPTY = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
TILTS = (0, 20, 35, 50, 65, 90, 135, 180)


def tilted_rows(name: str, val) -> list[dict]:
    """Heads tilted in the image plane: each validation photo turned by each of TILTS about its centre
    (on a canvas that holds it all), through the whole pipeline, with and without `upright`."""
    photos = [(load_image(r.image), r.points) for r in val]
    rows = []
    for upright in (True, False):
        lm = Landmarker(name, upright=upright, flip_test=False)
        for degrees in TILTS:
            P, G, missed = [], [], 0
            for rgb, gt in photos:
                img, A = turned_image(rgb, degrees)
                g = apply_affine(A, gt)
                face = nearest_face(lm.predict(img, small_faces=False), g)  # as fkd.evaluate: no tiles
                if face is None:
                    missed += 1
                    continue
                P.append(face.keypoints)
                G.append(g)
            e = 100 * nme(np.stack(P), np.stack(G)) if P else np.array([np.inf])
            rows.append({"upright": upright, "degrees": degrees, "nme_mean": float(e.mean()),
                         "fr8": float(100 * (e > 8).mean()), "not_found": missed})
            print(json.dumps(rows[-1]), flush=True)
        lm.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA_DIR))
    # every 68-point model the library offers, in fkd.MODELS' order (no second list to keep in step)
    p.add_argument("--models", nargs="+", default=[m for m in MODELS if read_card(m)["layout"] == "ibug68"])
    p.add_argument("--rounds", type=int, default=3, help="timing rounds over all models (median kept)")
    p.add_argument("--out", type=report_path, default=str(HERE / "accuracy_report.md"))
    a = p.parse_args()
    tag = Path(a.out).stem.removeprefix("accuracy_report")  # "" or e.g. "_avx2": the figures follow the report
    # a tag that names the model already (accuracy_report_face68.md) is not said twice
    pe_png = f"point_error_{a.models[0]}{'' if tag == f'_{a.models[0]}' else tag}.png"
    ced_png = f"ced{tag}.png"
    root = Path(a.data) / "300w"
    recs, _ = find_300w(root)
    _, val = split_300w(recs, root)
    # the webcam frame: the first validation photo in which the detector sees one face and nothing
    # else (every detection costs a landmark pass, even one that is then dropped)
    from fkd.detect import make_detector
    det = make_detector("mediapipe")
    frame = next(f for f in (cv2.resize(load_image(r.image), (640, 480)) for r in val) if len(det.detect(f)) == 1)
    det.close()

    rows, curves, sizes = [], {}, {}
    for name in a.models:
        if not resolve(name).exists():
            print(f"{name}: no weights, skipped")
            continue
        sizes[name] = resolve(name).stat().st_size / 1e6
        for flip in FLIPS:
            lm = Landmarker(name, flip_test=flip)
            for box in ("landmarks", "detector"):
                t = time.time()
                preds, gts, kept, missed = evaluate_records(lm, val, box)
                P, G = np.stack(preds), np.stack(gts)
                s = summary(P, G)
                rows.append({"model": name, "flip_test": flip, "box": box, **s, "not_found": len(missed)})
                print(json.dumps(rows[-1]), f"({time.time() - t:.0f} s)", flush=True)
                if flip is False:
                    curves[f"{name}, {box} box"] = nme(P, G)
                if name == a.models[0] and box == "landmarks" and flip is False:
                    pe = 100 * point_nme(P, G)
                    save_png(Path(a.out).parent / pe_png, point_error_plot(list(pe)))
                    worst = np.argsort(pe)[::-1][:8]
            lm.close()
        # the same detector boxes with their crops placed without the detector's face points (the box
        # map, then the card's locator if any), and that without the box map: what each is worth
        for box, calibration in (("detector, no face points", None), ("detector, no face points, no calibration", IDENTITY)):
            lm = Landmarker(name, flip_test=False, settings=Settings(marks=False))
            if calibration is not None:  # the locator, if any, crops the box by its own calibration
                for m in (lm, lm.locator):
                    if m is not None:
                        m.calibration = calibration
            preds, gts, _, missed = evaluate_records(lm, val, "detector")
            rows.append({"model": name, "flip_test": False, "box": box,
                         **summary(np.stack(preds), np.stack(gts)), "not_found": len(missed)})
            print(json.dumps(rows[-1]), flush=True)
            lm.close()
    tilts = tilted_rows(a.models[0], val)
    # timings drift with the machine's other load: measure the models in turns, several rounds,
    # and keep each model's median over the rounds, so that the side-by-side stays fair
    rounds = {name: [] for name in sizes}
    crops = {name: val_crops(name, val) for name in sizes}
    for _ in range(a.rounds):
        for name in sizes:
            rounds[name].append(speed(name, frame, crops[name]))
            print(name, json.dumps(rounds[name][-1]), flush=True)
    speeds = {name: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for name, rs in rounds.items()}
    # other load only ever adds time: the quietest round is the closest to the model's own cost
    best = {name: min(r[f"{FAST}_1t_ms"] for r in rs) for name, rs in rounds.items()}
    save_png(Path(a.out).parent / ced_png, ced_plot(curves))

    lines = ["# Accuracy and speed: 68-point models", "",
             f"`python bench/accuracy.py` on {time.strftime('%Y-%m-%d')}, {cpu_name()}, "
             f"torch {torch.__version__}. Validation split: {len(val)} faces of 300-W (fkd/splits/300w_val.txt), "
             "never trained on. NME normalised by the outer eye corners (inter-ocular), in %.", "",
             "| model | flip test | box | NME mean | NME median | FR@8 % | AUC@8 % | not found | MAE px |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {FLIP_WORD[r['flip_test']]} | {r['box']} | {r['nme_mean']:.2f} | "
                     f"{r['nme_median']:.2f} | {r['fr8']:.2f} | {r['auc8']:.1f} | {r['not_found']} | {r['mae_px']:.2f} |")
    cols = [(b, t) for b in BACKENDS for t in (1, 2)]
    lines += ["", "Speed, batch 1 after warm-up, median ms per face of the landmark model alone "
              f"(the crop is ready), median of {a.rounds} rounds that take the models in turns; "
              "'frame' = MediaPipe detection + crop + landmarks + drawing on a 640×480 frame "
              f"(one face), {LABEL[FAST]} (the default backend here), 1 thread; 'flip test' = the crop and its "
              "mirror, the two passes of `--flip-test`, on that backend and thread." +
              (" OpenVINO computes in bfloat16, which this CPU has." if "openvino" in BACKENDS else ""), "",
              f"| model | file MB | {LABEL[FAST]} 1 thread, quietest round | " +
              " | ".join(f"{LABEL[b]} {t} thread{'s' * (t > 1)}" for b, t in cols) + " | flip test | detector ms | frame ms (fps) | frame, no face, ms |",
              "|---|---|---|" + "---|" * len(cols) + "---|---|---|---|"]
    for name, s in speeds.items():
        lines.append(f"| {name} | {sizes[name]:.1f} | {best[name]:.2f} | " + " | ".join(f"{s[f'{b}_{t}t_ms']:.2f}" for b, t in cols) +
                     f" | {s['flip_1t_ms']:.2f} | {s['detector_ms']:.2f} | {s['frame_1t_ms']:.2f} ({1000 / s['frame_1t_ms']:.0f}) "
                     f"| {s['empty_frame_ms']:.1f} |")
    lines += ["", f"The flip test on the {len(val)} validation faces' landmark-box crops, {LABEL[FAST]}, 1 thread: mean "
              "ms per face (median of 3 sweeps over all faces, median of the rounds). 'auto' (the default of "
              "`Landmarker` and the CLIs, and the app's webcam) mirrors the faces whose first pass is less sure "
              "than the model's `flip_below` (its median confidence on the training faces, in its card); the share "
              "it mirrored is in brackets.", "",
              "| model | flip_below | off (one pass) | auto | on (two passes) |", "|---|---|---|---|---|"]
    for name, s in speeds.items():
        lines.append(f"| {name} | {s['flip_below']:.4f} | {s['val_off_ms']:.2f} | {s['val_auto_ms']:.2f} "
                     f"({100 * s['auto_share']:.0f} % mirrored) | {s['val_on_ms']:.2f} |")
    lines += ["", f"Tilted heads, {a.models[0]}: every validation photo turned by the angle about its centre, MediaPipe "
              "(its face points placing the crop; upright=False: its calibrated box), no flip test; `Landmarker(upright=...)`: a levelled second pass for faces tilted more "
              "than 10°, and turned copies searched when no face is sure. NME % / FR@8 % / not found.", "",
              "| upright | " + " | ".join(f"{d}°" for d in TILTS) + " |", "|---|" + "---|" * len(TILTS)]
    for upright in (True, False):
        cells = [next(r for r in tilts if r["upright"] == upright and r["degrees"] == d) for d in TILTS]
        lines.append(f"| {'yes (default)' if upright else 'no'} | " +
                     " | ".join(f"{r['nme_mean']:.2f} / {r['fr8']:.1f} / {r['not_found']}" for r in cells) + " |")
    if "worst" in locals():
        lines += ["", f"Hardest landmarks of {a.models[0]} (landmark box, NME %): " +
                  ", ".join(f"{i} ({pe[i]:.2f})" for i in worst) + f" — see {pe_png}.",
                  "", f"![CED]({ced_png})", "", f"![per-point error]({pe_png})"]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
