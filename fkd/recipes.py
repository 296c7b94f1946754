"""The project's training recipes (Parts 1–3) and `run(args)`, the loop that trains any of them.

A recipe is a plain dataclass of defaults: which data, which model, which crop and augmentation.
`train.py` only parses arguments; everything it needs to train lives here and in fkd/engine.py.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fkd import engine
from fkd.data import PatchDataset, find_300w, find_imm, split_300w, split_imm
from fkd.geometry import CropSpec, box_side, landmark_box
from fkd.io import writable
from fkd.layouts import IMM_NOSE_INDEX, LAYOUTS
from fkd.metrics import point_nme, summary
from fkd.models import ModelConfig, build_model
from fkd.transforms import EvalPreset, TrainPreset
from fkd.weights import as_saved, resolve, save_weights
from fkd.zoo import MODELS, TEACHERS_DIR


@dataclass
class Recipe:
    name: str                       # weights/<name>.safetensors
    part: str                       # what the course calls it
    data: str                       # "imm" | "300w"
    layout: str                     # fkd.layouts name of the output points
    model: ModelConfig
    pad: tuple[int, int]            # context pixels around the input, for augmentation
    epochs: int
    batch: int
    lr: float
    optimizer: str = "adam"         # adam (the seeds') | adamw
    weight_decay: float = 0.0
    ema: float = 0.0                # 0 = no EMA
    crop: CropSpec = field(default_factory=CropSpec)
    aug: dict = field(default_factory=dict)
    point_index: list[int] | None = None
    eval_every: int = 1             # validate every N epochs (and always after the last)
    init: str | None = None         # start from these weights (fine-tune); --init overrides
    teachers: tuple[str, ...] = ()  # distil from these weights (fkd/distil.py), averaged with their mirror
    distil: float = 0.0             # share of the loss that follows the teachers instead of the labels
    locator: str | None = None      # the recipe whose model places this one's crop in a box (the card's "locator")


RECIPES = {
    "nose": Recipe("nose", "Part 1: nose tip", "imm", "nose",
                   ModelConfig("nose_cnn", 1, 1, 80, 60, loss="mse"), pad=(10, 8), epochs=25, batch=8, lr=1e-3,
                   aug=dict(rotate=10, shift=0.05, scale=(0.95, 1.05), erase=0.0, gray_prob=0.0),
                   point_index=[IMM_NOSE_INDEX]),
    "imm58": Recipe("imm58", "Part 2: 58 IMM points", "imm", "imm58",
                    ModelConfig("imm_cnn", 58, 1, 240, 180, loss="mse"), pad=(30, 22), epochs=60, batch=8, lr=1e-3,
                    aug=dict(rotate=12, shift=0.06, scale=(0.9, 1.1), erase=0.0, gray_prob=0.0)),
    "face68_baseline": Recipe("face68_baseline", "Part 3: 68 points, ResNet18 regression (seed recipe)", "300w", "ibug68",
                       ModelConfig("resnet18", 68, 3, 128, 128, loss="wing", width=32), pad=(32, 32), epochs=40,
                       batch=32, lr=1e-3, optimizer="adamw", weight_decay=1e-4, ema=0.998),
    # the default: the stride-32 stage left out (context=False) costs ~30 % less time per face and
    # per training step, which buys 170 epochs in the time 110 took with it (see bench/HISTORY.md)
    "ibug68": Recipe("ibug68", "Part 3+: 68 points, grid + offset heads on MobileNetV3 (to stride 16), 160²",
                     "300w", "ibug68",
                     ModelConfig("pipnet", 68, 3, 160, 160, grid_stride=8, upsample="bilinear", mix_kernel=5,
                                 offset_weight=2.0, context=False), pad=(40, 40), epochs=170, batch=32,
                     lr=1e-3, optimizer="adamw", weight_decay=1e-4, ema=0.998, eval_every=5),
}
# the previous default: the same head with MobileNetV3's stride-32 stage merged in, 110 epochs
RECIPES["ibug68_ctx"] = dataclasses.replace(
    RECIPES["ibug68"], name="ibug68_ctx", part="Part 3+: 68 points, grid + offset heads on MobileNetV3 (to stride 32), 160²",
    model=dataclasses.replace(RECIPES["ibug68"].model, context=True), epochs=110)
# a narrower head (128 instead of 192 channels), 120 epochs: 2.61 against 2.84 ms per face for
# 3.68 against 3.60 % val NME (bench/accuracy_report.md)
RECIPES["ibug68_slim"] = dataclasses.replace(
    RECIPES["ibug68"], name="ibug68_slim", part="Part 3+: 68 points, grid + offset heads on MobileNetV3 (to stride 16), 160², 128-wide head",
    model=dataclasses.replace(RECIPES["ibug68"].model, mix_width=128), epochs=120)
# `ibug68` fine-tuned 50 epochs on the labels and, half and half, on the answers of the three models
# above averaged over each image and its mirror (six passes per face in training, one in use);
# 50 epochs at 1e-3 beat 25 at 3e-4 by 0.03 % NME per face (bench/HISTORY.md)
RECIPES["face68_accurate"] = dataclasses.replace(
    RECIPES["ibug68"], name="face68_accurate", part="Part 3+: 68 points, `ibug68` distilled from the flip-averaged ibug68 + _ctx + _slim",
    init="ibug68", teachers=("ibug68", "ibug68_ctx", "ibug68_slim"), distil=0.5, epochs=50, lr=1e-3)
# `face68_accurate` at 128²: 0.64× the pixels, so ~0.7× the time per face; fine-tuned from it, half on the
# labels and half on its own flip-averaged answers at 160² (fkd/distil.py resizes the crops).
# A tighter crop (1.15 box sides, not 1.3) spends those pixels on the face rather than around it
# (1.3 → 1.2 → 1.15: 3.58 → 3.51 → 3.48 % in one pass, bench/HISTORY.md); the shift jitter is
# widened to stay the same in box sides (0.08 × 1.3 / 1.15)
RECIPES["ibug68_128_base"] = dataclasses.replace(
    RECIPES["ibug68"], name="ibug68_128_base",
    part="Part 3+: 68 points at 128² on a tighter crop, `face68_accurate` distilled from itself at 160² (the first round of face68)",
    model=dataclasses.replace(RECIPES["ibug68"].model, input_w=128, input_h=128), pad=(32, 32),
    crop=CropSpec(w=1.15, h=1.15), aug=dict(shift=0.09),
    init="face68_accurate", teachers=("face68_accurate",), distil=0.5, epochs=40, lr=1e-3)
# the fast model: a second round, 30 epochs from the first, on three teachers averaged (each with its
# mirror) instead of one. On the student's crops the three score 3.30 % against 3.34 for `face68_accurate`
# alone (flip-averaged, shifted); the student gains 0.03 % (bench/HISTORY.md)
RECIPES["face68"] = dataclasses.replace(
    RECIPES["ibug68_128_base"], name="face68",
    part="Part 3+: 68 points at 128² on a tighter crop, `ibug68_128_base` distilled again from face68_accurate + ibug68_quick + ibug68 at 160²",
    init="ibug68_128_base", teachers=("face68_accurate", "ibug68_quick", "ibug68"), epochs=30,
    locator="face68_locator")
# face68's first pass on a box: the same network at 64², ~0.55× the time of a 128² pass, fine-tuned from
# face68 on the labels with a wide box jitter (shift, zoom, turn), so that the crop of its points is
# where face68 then reads a face once; before, 97 % of boxes took two 128² passes (bench/HISTORY.md)
RECIPES["face68_locator"] = dataclasses.replace(
    RECIPES["face68"], name="face68_locator",
    part="face68's locator: the 68 points at 64², to cut face68's crop in a box",
    model=dataclasses.replace(RECIPES["face68"].model, input_w=64, input_h=64), pad=(24, 24),
    aug=dict(shift=0.15, scale=(0.7, 1.3), rotate=30), init="face68", teachers=(), distil=0.0, epochs=40,
    locator=None)

# `ibug68` on the 128² models' tighter crop (1.15 box sides, shift jitter widened to match), 100 epochs
# instead of 170: the from-scratch route sized for 90 minutes on a CPU without bfloat16 (AVX2), where
# an epoch takes ~1.6-1.9× as long as where `ibug68`'s 170 took 76 min (bench/HISTORY.md)
RECIPES["ibug68_quick"] = dataclasses.replace(
    RECIPES["ibug68"], name="ibug68_quick", part="Part 3+: 68 points, grid + offset heads on MobileNetV3, 160², tighter crop, 100 epochs",
    crop=RECIPES["ibug68_128_base"].crop, aug=dict(RECIPES["ibug68_128_base"].aug), epochs=100)


def imm_crop(records) -> CropSpec:
    """The IMM models see the whole photo (seeds' recipe): express it relative to the landmark box,
    so that on other photos a face box gives the same framing."""
    from PIL import Image

    d = []
    for r in records:
        with Image.open(r.image) as im:
            W, H = im.size
        b = landmark_box(r.points)
        s = box_side(b)
        d.append([(W / 2 - (b[0] + b[2]) / 2) / s, (H / 2 - (b[1] + b[3]) / 2) / s, W / s, H / s])
    m = np.mean(d, 0)
    return CropSpec(*(round(float(v), 4) for v in m))


def load_records(recipe: Recipe, data_root: Path) -> tuple[list, list, Path]:
    """Train/validation records of a recipe; clear messages when the data is not there."""
    sub = data_root / ("imm_face_db" if recipe.data == "imm" else "300w")
    if not sub.is_dir():
        raise SystemExit(f"error: {sub} not found. Put the {'IMM face database' if recipe.data == 'imm' else 'iBUG 300-W'}"
                         f" there or pass --data DIR (see README, 'Data').")
    recs, problems = (find_imm(sub) if recipe.data == "imm" else find_300w(sub))
    if problems:
        print(f"skipped {len(problems)} file(s) without usable labels, e.g. {problems[0]}", file=sys.stderr)
    if not recs:
        raise SystemExit(f"error: no labelled faces under {sub}")
    train, val = split_imm(recs) if recipe.data == "imm" else split_300w(recs, sub)
    if not train or not val:
        raise SystemExit(f"error: {sub}: the split left {len(train)} training and {len(val)} validation faces")
    return train, val, sub


def build_datasets(recipe: Recipe, train_recs, val_recs):
    cfg = recipe.model
    size = (cfg.input_w, cfg.input_h)
    flip = LAYOUTS[recipe.layout].flip
    tr = TrainPreset(size_wh=size, flip_perm=flip, **recipe.aug)
    ev = EvalPreset(size_wh=size)
    kw = dict(spec=recipe.crop, size_wh=size, channels=cfg.in_channels, pad=recipe.pad, point_index=recipe.point_index)
    return PatchDataset(train_recs, transform=tr, **kw), PatchDataset(val_recs, transform=ev, **kw)


def make_optimizer(recipe: Recipe, model: torch.nn.Module) -> torch.optim.Optimizer:
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=recipe.lr)


def eyes_of(recipe: Recipe):
    return LAYOUTS[recipe.layout].eyes if recipe.layout != "imm58" else None


def make_recipe(args) -> Recipe:
    """The recipe as the command line changes it (epochs, lr, teachers, blurpool, name...)."""
    recipe = dataclasses.replace(RECIPES[args.model])
    for k in ("epochs", "batch", "lr", "eval_every", "distil"):
        if getattr(args, k, None) is not None:
            setattr(recipe, k, getattr(args, k))
    if getattr(args, "teachers", None):
        recipe.teachers = tuple(args.teachers)
        recipe.part = f"{RECIPES[args.model].part.split(', `')[0]}, distilled from {' + '.join(recipe.teachers)}"
        if getattr(args, "distil", None) is None:  # a recipe without teachers: half labels, half teachers
            recipe.distil = recipe.distil or 0.5
    if getattr(args, "distil", None) is not None and not recipe.teachers:
        raise SystemExit(f"error: --distil: {args.model} has no teachers to distil from (try face68_accurate)")
    if getattr(args, "blurpool", False):
        recipe.model = dataclasses.replace(recipe.model, blurpool=True)
        recipe.name += "_blurpool"
    if getattr(args, "name", None):
        recipe.name = args.name
    return recipe


def run_settings(args, world: int = 1) -> dict[str, object]:
    """What decides the weights a run trains, as they take effect (recipe defaults filled in, so no
    --epochs and `--epochs 60` agree on a 60-epoch recipe), keyed by the flag that sets each."""
    r = make_recipe(args)
    return {"recipe": args.model, "--epochs": r.epochs, "--batch": r.batch, "--lr": r.lr,
            "--seed": getattr(args, "seed", 0), "--limit": getattr(args, "limit", 0), "--distil": r.distil,
            "--teachers": list(r.teachers), "--init": getattr(args, "init", None) or r.init,
            "--blurpool": r.model.blurpool, "--data": str(Path(getattr(args, "data", ".")).resolve()),
            "torchrun --nproc_per_node": world}  # processes multiply the batch


def _compared(flag: str, value):
    """A setting as --resume compares it: the weights files --init / --teachers name, not how they are
    spelled (weights/teachers/ibug68 and ./weights/teachers/ibug68 are one file)."""
    if flag == "--init" and value is not None:
        return resolve(value).resolve()
    if flag == "--teachers":
        return [resolve(t).resolve() for t in value]
    return value


def check_resume(ckpt_info: dict, args, world: int) -> None:
    """--resume continues the run as it was started: refuse a command line that would change it
    halfway (the schedule, the data, the teachers...) rather than silently pick either value."""
    if "args" not in ckpt_info:  # a checkpoint older than its args
        return
    then = run_settings(argparse.Namespace(**ckpt_info["args"]), ckpt_info.get("world", world))
    now = run_settings(args, world)
    diff = [f"{k} {_show(then[k])} (this command: {_show(now[k])})" for k in then
            if _compared(k, then[k]) != _compared(k, now[k])]
    if diff:
        raise SystemExit(f"error: --resume: the checkpoint's run was started with {', '.join(diff)}; "
                         "pass the original values to continue it, or leave out --resume to start over")


def _show(value) -> str:
    """A setting as the command line spells it: `--teachers a b`, `--blurpool on`, `--init none`."""
    if isinstance(value, list):
        return " ".join(value) or "none"
    if isinstance(value, bool):  # bool first: it is an int too
        return "on" if value else "off"
    return "none" if value is None else str(value)


def check_writable(folder: Path, flag: str) -> None:
    """Fail before training, not when the weights are ready to be saved."""
    if not writable(folder):
        raise SystemExit(f"error: {flag} {folder}: cannot write there")


def run(args, report=None) -> dict:
    """Train one recipe end to end: data, model, loop, checkpoints, weights + card.
    report(out_dir, name, model, card, val_set, pred, gt): draws the run's pictures (train.py's)."""
    recipe = make_recipe(args)
    # the lineup's models and their locators go to --out, the others (teachers, starting weights) to --out/teachers/
    in_use = set(MODELS) | {r.locator for r in RECIPES.values() if r.locator}
    out_dir = Path(args.out) if args.model in in_use else Path(args.out) / TEACHERS_DIR
    run_dir = Path(args.run_dir) / recipe.name
    ckpt = run_dir / "checkpoint"
    ckpt_json = ckpt.with_suffix(".json")
    if args.resume and not ckpt_json.exists():  # starting over instead would overwrite --out's weights
        raise SystemExit(f"error: --resume: no checkpoint at {ckpt} (the run's --run-dir?); "
                         "leave out --resume to start a new run")
    d = engine.init_distributed()
    resume_info = json.loads(ckpt_json.read_text()) if args.resume else None
    if resume_info is not None:
        check_resume(resume_info, args, d.world)
    check_writable(out_dir, "--out")
    check_writable(run_dir, "--run-dir")
    device = engine.pick_device(d)
    torch.manual_seed(args.seed + d.rank)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)

    # the weights to start from and to learn from are checked before the (slow) data decoding
    model = build_model(recipe.model)
    init = getattr(args, "init", None) or recipe.init
    if init:  # fine-tune: start from trained weights of the same architecture
        from fkd.weights import load_model
        init_model, init_card = load_model(init)
        # the config load_model parsed (a key older cards lack takes its default), not the card's raw dict;
        # a grid model is all convolutions, so its weights also start a run at another input size
        same = (dataclasses.replace(init_model.cfg, input_w=recipe.model.input_w, input_h=recipe.model.input_h)
                if init_model.cfg.arch == "pipnet" else init_model.cfg)
        if same != recipe.model:
            raise SystemExit(f"error: {init} is a {init_card['config']['arch']} model, not this recipe's")
        model.load_state_dict(init_model.state_dict())
        if d.master:
            print(f"starting from {init}")
    teacher = None
    if recipe.teachers:
        from fkd.distil import FlipEnsemble
        if recipe.model.arch != "pipnet":
            raise SystemExit(f"error: {recipe.name}: distillation needs a pipnet student")
        teacher = FlipEnsemble.load(list(recipe.teachers), LAYOUTS[recipe.layout].flip, recipe.distil, device,
                                    recipe.model.grid_stride)
        if d.master:
            print(f"distilling from {', '.join(recipe.teachers)} (flip-averaged), weight {recipe.distil}")

    train_recs, val_recs, sub = load_records(recipe, Path(args.data))
    if args.limit:
        train_recs, val_recs = train_recs[: args.limit], val_recs[: max(2, args.limit // 4)]
    if recipe.data == "imm":
        recipe.crop = imm_crop(train_recs)
    t0 = time.time()
    train_set, val_set = build_datasets(recipe, train_recs, val_recs)
    if d.master:
        print(f"{recipe.part}: {len(train_set)} training / {len(val_set)} validation faces from {sub} "
              f"(decoded in {time.time() - t0:.1f} s), device {device}, world {d.world}")

    sampler = torch.utils.data.DistributedSampler(train_set, d.world, d.rank, seed=args.seed) if d.world > 1 else None
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=recipe.batch, shuffle=sampler is None,
                                               sampler=sampler, num_workers=args.workers, drop_last=len(train_set) > recipe.batch,
                                               persistent_workers=args.workers > 0)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=64)

    model = model.to(device).to(memory_format=torch.channels_last)
    raw_model = model
    if d.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[d.local_rank] if device.type == "cuda" else None)
    optimizer = make_optimizer(recipe, raw_model)
    ema = engine.EMA(raw_model, recipe.ema) if recipe.ema else None

    history, start_epoch, step, elapsed = engine.History(), 0, 0, 0.0
    if resume_info is not None:
        info = engine.load_checkpoint(ckpt, raw_model, optimizer, ema)
        history.rows, start_epoch, step, elapsed = info["history"], info["epoch"] + 1, info["step"], info["elapsed"]
        if d.master:
            print(f"resumed from {ckpt} at epoch {start_epoch} (step {step})")

    steps_per_epoch = len(train_loader)
    total = recipe.epochs * steps_per_epoch
    eyes = eyes_of(recipe)
    epoch, saved = start_epoch, start_epoch - 1  # the last epoch whose checkpoint is on disk
    try:
        for epoch in range(start_epoch, recipe.epochs):
            t_ep = time.time()
            if sampler is not None:
                sampler.set_epoch(epoch)
            loss, step = engine.train_one_epoch(model, optimizer, train_loader, device, step=step, total_steps=total,
                                                base_lr=recipe.lr, ema=ema, raw_model=raw_model, epoch=epoch,
                                                progress=d.master and not args.quiet, teacher=teacher)
            if d.master:
                row = {"epoch": epoch, "train_loss": round(loss, 6), "elapsed_s": 0.0}
                if (epoch + 1) % recipe.eval_every == 0 or epoch + 1 == recipe.epochs:
                    pred, gt = engine.predict(raw_model, val_loader, device)
                    val_loss = float(np.mean([l for l in _val_losses(raw_model, val_loader, device)]))
                    s = summary(pred, gt, eyes)
                    row.update(val_loss=round(val_loss, 6), val_mae_px=round(s["mae_px"], 3))
                    if "nme_mean" in s:
                        row["val_nme"] = round(s["nme_mean"], 3)
                    if ema is not None and "nme_mean" in s:
                        p2, _ = engine.predict(_ema_model(raw_model, ema, recipe.model, device), val_loader, device)
                        row["val_nme_ema"] = round(summary(p2, gt, eyes)["nme_mean"], 3)
                elapsed += time.time() - t_ep  # the epoch's training and validation
                row["elapsed_s"] = round(elapsed, 1)
                history.add(**row)
                print(json.dumps(row), flush=True)
                engine.save_checkpoint(ckpt, raw_model, optimizer, ema,
                                       {"epoch": epoch, "step": step, "elapsed": elapsed, "history": history.rows,
                                        "args": {k: v for k, v in vars(args).items()}, "recipe": recipe.name,
                                        "world": d.world})
                saved = epoch
            if args.stop_after and epoch + 1 >= args.stop_after:  # every rank stops, not only the master
                if d.master:
                    print(f"stopping after epoch {epoch} as asked (--stop-after); --resume continues")
                return {}
    except KeyboardInterrupt:  # Ctrl-C: one line instead of a traceback; the checkpoints are written atomically
        if d.master and ckpt_json.exists():  # what --resume reads: a signal between the save and `saved = epoch`
            saved = max(saved, json.loads(ckpt_json.read_text())["epoch"])
        if d.master:
            then = ("a sweep starts over when run again" if getattr(args, "sweep", False) else "nothing saved yet"
                    if saved < 0 else f"the same command with --resume continues after epoch {saved}")
            print(f"\nstopped at epoch {epoch}; {then}", file=sys.stderr)
        raise SystemExit(130) from None
    if not d.master:
        return {}
    # Ship the EMA weights unless they score worse than the raw ones (EMA lags on short runs). Both are
    # compared before the label shift: it is the labels' offset, the same for both within ~0.01 px.
    final, which = raw_model.eval(), "raw"
    pred, gt = engine.predict(final, val_loader, device)
    metrics = summary(pred, gt, eyes)
    if ema is not None:
        ema_model = _ema_model(raw_model, ema, recipe.model, device)
        p2, _ = engine.predict(ema_model, val_loader, device)
        m2 = summary(p2, gt, eyes)
        if m2.get("nme_mean", m2["mae_px"]) <= metrics.get("nme_mean", metrics["mae_px"]):
            final, which, pred, metrics = ema_model, "ema", p2, m2
    as_trained = metrics  # what the epoch rows measure: no label shift
    # the card's numbers are the saved file's: its weights in fp16, as `train.py report` reads them
    final = as_saved(final)
    pred, _ = engine.predict(final, val_loader, device)
    numbers, pred = card_numbers(final, as_eval(train_set, recipe), pred, gt, eyes, device)
    metrics = numbers["val_metrics"]
    card = {
        "name": recipe.name, "part": recipe.part, "layout": recipe.layout, "config": recipe.model.to_dict(),
        "crop": recipe.crop.to_dict(), **({"locator": recipe.locator} if recipe.locator else {}), **numbers,
        "training": {"data": str(sub.name), "train_faces": len(train_set), "val_faces": len(val_set),
                     "split": "persons 1-32 train / 33-40 val" if recipe.data == "imm" else "fkd/splits/300w_val.txt",
                     "epochs": recipe.epochs, "batch": recipe.batch, "lr": recipe.lr, "optimizer": recipe.optimizer,
                     "ema": recipe.ema, "weights": which, "init": str(init) if init else None,
                     "teachers": list(recipe.teachers), "distil": recipe.distil, "aug": recipe.aug, "wall_time_s": round(elapsed, 1), "device": str(device),
                     "world_size": d.world, "torch": torch.__version__},
        "history": history.rows,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(out_dir / recipe.name, final, card)
    history.write_csv(run_dir / "history.csv")
    print(final_report(f"{out_dir / recipe.name}.safetensors", which, metrics, as_trained, numbers["label_shift"], elapsed))
    try:
        if report is not None:
            report(out_dir, recipe.name, final, card, val_set, pred, gt)
    except Exception as e:  # the weights are safe; the pictures can be redone with `train.py report`
        print(f"warning: could not draw the training report: {e}", file=sys.stderr)
    return metrics


def final_report(path: str, which: str, shipped: dict, as_trained: dict, shift, elapsed: float) -> str:
    """The end of a run's log: the validation numbers of the weights saved (`which`: "raw" or "ema"),
    for the points Landmarker gives (`shipped`, the card's val_metrics: the label shift added) and as
    the epoch rows measure them (`as_trained`: no shift). MAE in the model's input pixels."""
    def scores(m: dict) -> str:
        nme = f"NME {m['nme_mean']:.3f} % (median {m['nme_median']:.3f}), " if "nme_mean" in m else ""
        return f"{nme}MAE {m['mae_px']:.3f} px"
    if which == "raw":
        rows = "the last epoch's " + ("val_nme and val_mae_px" if "nme_mean" in as_trained else "val_mae_px")
    else:  # the rows' val_nme and val_mae_px score the raw weights
        rows = "the last epoch's val_nme_ema" if "nme_mean" in as_trained else "no epoch row (they score the raw weights)"
    return (f"saved {path} ({which} weights), {engine.duration(elapsed)} of training and validation\n"
            f"validation: {scores(shipped)} with the label shift ({shift[0]:+.3f}, {shift[1]:+.3f} px) added, "
            f"as Landmarker gives points;\n  {scores(as_trained)} without it, as {rows}")


def as_eval(ds: PatchDataset, recipe: Recipe) -> PatchDataset:
    """The same decoded faces, cropped as in use (no augmentation): no second decoding of the JPEGs."""
    view = copy.copy(ds)
    view.transform = EvalPreset(size_wh=(recipe.model.input_w, recipe.model.input_h))
    return view


def card_numbers(model, train_faces: PatchDataset, pred: np.ndarray, gt: np.ndarray, eyes, device) -> tuple[dict, np.ndarray]:
    """What a card says of a model (at the end of training, and `train.py report`): what it learns from
    its training faces (`training_face_stats`) and its validation numbers, "val_metrics" (NME, FR@8,
    AUC@8, MAE px) and "val_point_nme" (% per point, 68-point models), for the points Landmarker gives:
    `pred` (validation, input pixels) with the label_shift added. Returns (those entries, those points)."""
    learned = training_face_stats(model, train_faces, device)
    pred = pred + np.float32(learned["label_shift"])
    return {**learned,
            "val_metrics": {k: round(v, 4) if isinstance(v, float) else v for k, v in summary(pred, gt, eyes).items()},
            "val_point_nme": [round(100 * float(v), 3) for v in point_nme(pred, gt, eyes)] if eyes else None}, pred


def training_face_stats(model, faces: PatchDataset, device) -> dict:
    """What the card learns from the model's own training faces (`faces`, cropped as in use):
    - "flip_below": its median confidence on them (none for a model without confidence).
      Landmarker(flip_test="auto") mirrors the faces below it: about half, the harder half.
    - "label_shift": the mean of label - prediction, (x, y) in input pixels, which Landmarker adds to
      every pass's points. Training on faces and their mirrors (and the flip test) puts each point
      where the face and its mirror agree. Labels that sit off that place by a constant cannot be
      learned that way, but the constant can be added back. 300-W's sit ~0.5 input pixels to the
      right, in all three subsets and on the validation faces too (bench/HISTORY.md)."""
    pred, gt, conf = engine.outputs(model, torch.utils.data.DataLoader(faces, batch_size=64), device, confidence=True)
    out = {"label_shift": [round(float(v), 4) for v in (gt - pred).reshape(-1, 2).mean(0)]}
    return out if conf is None else {"flip_below": round(float(conf.median()), 5), **out}


def _ema_model(raw_model, ema, cfg, device):
    if ema is None:
        return raw_model
    m = build_model(cfg).to(device).to(memory_format=torch.channels_last)
    m.load_state_dict(ema.shadow)
    return m.eval()


@torch.inference_mode()
def _val_losses(model, loader, device):
    model.eval()
    for x, y in loader:
        _, l = model(x.to(device).contiguous(memory_format=torch.channels_last), y.to(device))
        yield l.item()


def sweep(args, lrs=(1e-4, 1e-3, 1e-2), epochs=(10, 25)) -> list[dict]:
    """The seeds' Part 1 table: validation error of the nose model per learning rate × epochs.

    Each cell is a fresh run into a temporary folder; the table goes to weights/reports/nose_sweep.md.
    """
    check_writable(Path(args.out) / "reports", "--out")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lr in lrs:
            for ep in epochs:
                a = argparse_copy(args, model="nose", lr=lr, epochs=ep, out=tmp, run_dir=tmp, name=f"nose_{lr}_{ep}",
                                  quiet=True, resume=False, sweep=True)  # a cell of the sweep (what Ctrl-C says)
                m = run(a)
                rows.append({"lr": lr, "epochs": ep, "val_mean_dist_px": m["mean_dist_px"], "val_mae_px": m["mae_px"]})
    lines = ["# Nose tip (Part 1): learning rate × epochs", "",
             "Validation = IMM persons 33–40; error in pixels of the 80×60 input (`python train.py nose --sweep`).", "",
             "| lr | epochs | mean distance (px) | MAE per coordinate (px) |", "|---|---|---|---|"]
    lines += [f"| {r['lr']:g} | {r['epochs']} | {r['val_mean_dist_px']:.2f} | {r['val_mae_px']:.2f} |" for r in rows]
    out = Path(args.out) / "reports" / "nose_sweep.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


def argparse_copy(args, **changes):
    d = vars(args).copy()
    d.update(changes)
    return argparse.Namespace(**d)
