"""One training loop and one evaluation for every model, plus checkpoints that survive `kill -9`.

Checkpoints are safetensors (model, EMA, optimizer tensors, RNG state) + JSON (epoch, step,
history, args), each written atomically, so `--resume` restarts from the last finished epoch
and reproduces the same run.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from tqdm import tqdm

from fkd.weights import save_json, save_tensors


# ---------------------------------------------------------------------------------------------
# distributed helpers (one process unless launched by torchrun)

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def master(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """torchrun sets RANK/WORLD_SIZE: join the group (nccl on CUDA, gloo on CPU); else one process."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Dist()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    d = Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if torch.cuda.is_available():
        torch.cuda.set_device(d.local_rank)
    return d


def pick_device(d: Dist) -> torch.device:
    return torch.device(f"cuda:{d.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# EMA of weights and the learning-rate schedule

class EMA:
    """Exponential moving average of the float weights: smoother, usually better, weights to ship."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.998):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        # warm-up: early on the average would mostly remember the random init
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)


def cosine_lr(step: int, total: int, base: float, warmup: int = 200, floor: float = 0.01) -> float:
    """Linear warm-up, then cosine from `base` down to `floor * base` at the last step."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


# ---------------------------------------------------------------------------------------------
# loops

BAR_SECONDS = 1.0      # the progress bar is redrawn at most this often


def duration(seconds: float) -> str:
    """A run's length in the unit that reads best: "4.6 s", "12.3 min", "1.3 h"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def train_one_epoch(model, optimizer, loader, device, *, step: int, total_steps: int, base_lr: float,
                    ema: EMA | None = None, raw_model=None, epoch: int = 0, progress: bool = True,
                    teacher=None) -> tuple[float, int]:
    """One pass over `loader`. Returns (mean loss, global step). A non-finite loss stops the run.
    `teacher(x)` (fkd/distil.py), if given, answers each batch and the model's loss learns from it too."""
    model.train()
    losses = []
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not progress, mininterval=BAR_SECONDS)
    for x, y in bar:
        lr = cosine_lr(step, total_steps, base_lr, warmup=min(200, total_steps // 10))
        for g in optimizer.param_groups:
            g["lr"] = lr
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        _, loss = model(x, y) if teacher is None else model(x, y, teacher(x))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}: stopping (lower the learning rate?)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update(raw_model if raw_model is not None else model, step)
        losses.append(loss.item())  # .item() syncs; fine on CPU, cheap relative to a step
        step += 1
        # drawn with the count at tqdm's next redraw: a redraw from here would show the count of the
        # last one (tqdm updates it only then), 0/3 through a short epoch
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{lr:.2e}", refresh=False)
    return float(np.mean(losses)), step


def predict(model, loader, device) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and targets over a loader, in input pixels: (M, N, 2) each."""
    return outputs(model, loader, device)[:2]


@torch.inference_mode()
def outputs(model, loader, device, confidence: bool = False) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
    """(predictions, targets, confidences) over a loader in one pass: points in input pixels, (M, N, 2)
    each; with `confidence`, the model's confidence in each answer (M,), else (or for a model without
    one) None."""
    model.eval()
    sure = confidence and hasattr(model, "predict_with_confidence")
    preds, targets, confs = [], [], []
    for x, y in loader:
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        p, c = model.predict_with_confidence(x) if sure else (model(x)[0], None)
        preds.append(p.float().cpu().numpy())
        targets.append(y.numpy())
        if sure:
            confs.append(c.float().cpu())
    return np.concatenate(preds), np.concatenate(targets), torch.cat(confs) if sure else None


# ---------------------------------------------------------------------------------------------
# checkpoints (no pickle)

def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {f"opt.{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v))
               for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, {"param_groups": sd["param_groups"]}


def _unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: Path, model, optimizer, ema: EMA | None, info: dict) -> None:
    """model.* / ema.* / opt.* tensors + RNG in one safetensors file; `info` (epoch, step, history,
    args) + optimizer groups in a JSON beside it. The JSON is written last: it marks completeness."""
    path = Path(path)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.shadow.items()})
    opt_t, opt_meta = _flatten_optimizer(optimizer)
    tensors.update(opt_t)
    tensors["rng.torch"] = torch.get_rng_state()
    save_tensors(path.with_suffix(".safetensors"), tensors)
    save_json(path.with_suffix(".json"), {**info, "optimizer": opt_meta})


def load_checkpoint(path: Path, model, optimizer, ema: EMA | None) -> dict:
    path = Path(path)
    info = json.loads(path.with_suffix(".json").read_text())
    t = load_file(str(path.with_suffix(".safetensors")))
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    if ema is not None:
        ema.shadow = {k[4:]: v for k, v in t.items() if k.startswith("ema.")}
    optimizer.load_state_dict(_unflatten_optimizer(t, info["optimizer"]))
    torch.set_rng_state(t["rng.torch"])
    return info


@dataclass
class History:
    """Per-epoch log: what the loss-curve CSV/PNG and the model card show."""
    rows: list[dict] = field(default_factory=list)

    def add(self, **row) -> None:
        self.rows.append(row)

    def write_csv(self, path: Path) -> None:
        if not self.rows:
            return
        keys = list(self.rows[0])
        lines = [",".join(keys)] + [",".join(f"{r.get(k, '')}" for k in keys) for r in self.rows]
        Path(path).write_text("\n".join(lines) + "\n")
