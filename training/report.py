"""The pictures a training run leaves beside its weights: curves, galleries, filters, per-point error.
train.py draws them after a run and redraws them (`python train.py report --report-name NAME`)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from fkd import engine, viz
from fkd.geometry import CropSpec
from fkd.metrics import nme
from fkd.models import first_conv
from fkd.recipes import RECIPES, build_datasets, card_numbers, eyes_of, load_records
from fkd.weights import load_model, resolve, save_json


def report_paths(out_dir: Path, name: str) -> dict[str, Path]:
    d = Path(out_dir) / "reports"
    return {k: d / f"{name}_{k}.png" for k in ("curves", "gallery", "filters", "points")}


def write_training_report(out_dir: Path, name: str, model, card: dict, val_set, pred: np.ndarray, gt: np.ndarray) -> None:
    paths = report_paths(out_dir, name)
    paths["curves"].parent.mkdir(parents=True, exist_ok=True)
    viz.save_png(paths["curves"], viz.loss_curves(card["history"], name))
    viz.save_png(paths["filters"], viz.filter_grid(first_conv(model).weight.detach().cpu().numpy()))
    if gt.shape[1] > 1 and len(gt) > 1:  # best and worst need two faces at least
        err = nme(pred, gt, (36, 45) if gt.shape[1] == 68 else None)
        order = np.argsort(err)
        k = min(6, len(order) // 2)  # a small split (IMM's 8 faces) must not show a face as both
        pick = list(order[:k]) + list(order[len(order) - k:])
        images = []
        for i in pick:
            x, _ = val_set[i]
            images.append(viz.input_picture(x))
        caps = [("best " if j < k else "worst ") + f"{100 * err[i]:.1f}%" for j, i in enumerate(pick)]
        viz.save_png(paths["gallery"], viz.gallery(images, [pred[i] for i in pick], [gt[i] for i in pick], caps, cols=k))
    if card.get("val_point_nme"):
        viz.save_png(paths["points"], viz.point_error_plot(card["val_point_nme"]))
    print(f"report: {', '.join(str(p) for p in paths.values() if p.exists())}")


def redraw_report(args) -> None:
    """`train.py report --report-name NAME`: redraw the PNGs from saved weights and the validation set,
    and refresh what the card learns from the training faces (`flip_below`, `label_shift`; older cards
    lack them) and its validation numbers, for the points Landmarker gives now (the history's
    per-epoch numbers stay as they were measured)."""
    model, card = load_model(Path(args.out) / args.report_name)
    recipe = next(r for r in RECIPES.values() if r.layout == card["layout"] and r.model.arch == card["config"]["arch"])
    recipe = dataclasses.replace(recipe, crop=CropSpec(**card["crop"]), model=dataclasses.replace(recipe.model, **card["config"]))
    train_recs, val_recs, _ = load_records(recipe, Path(args.data))
    _, val_set = build_datasets(recipe, [], val_recs)
    pred, gt = engine.predict(model.to(memory_format=torch.channels_last), torch.utils.data.DataLoader(val_set, batch_size=64), "cpu")
    numbers, pred = card_numbers(model, build_datasets(recipe, [], train_recs)[1], pred, gt, eyes_of(recipe), "cpu")
    card.update(numbers)
    save_json(resolve(Path(args.out) / args.report_name).with_suffix(".json"), card)
    write_training_report(Path(args.out), args.report_name, model, card, val_set, pred, gt)
