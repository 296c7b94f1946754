"""Weights on disk: safetensors (no pickle) + a JSON model card, written atomically.

A model card holds everything needed to rebuild and use the model: the `ModelConfig`, the point
layout, the crop spec, plus how it was trained and what it scored. Loading checks the card
against the tensors, so a mismatched or damaged pair fails with the file named.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from fkd.config import ModelConfig
from fkd.zoo import OLD_NAMES, TEACHERS_DIR

PACKAGED_WEIGHTS = Path(__file__).resolve().parent / "_weights"  # where pyproject.toml installs weights/
WEIGHTS_DIR = PACKAGED_WEIGHTS if PACKAGED_WEIGHTS.is_dir() else Path(__file__).resolve().parent.parent / "weights"


class WeightsError(RuntimeError):
    """Missing, damaged or mismatched weights; the message names the file."""


def atomic_write(path: Path, write) -> None:
    """Write via a temp file in the same folder + rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; weights are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_json(path: Path, obj: dict) -> None:
    atomic_write(path, lambda t: Path(t).write_text(json.dumps(obj, indent=1)))


def save_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda t: save_file(tensors, t, metadata=metadata))


def save_weights(path: Path, model, card: dict, dtype=None) -> None:
    """Float weights in `dtype` (default fp16: it halves the file; models run in fp32 after loading)."""
    import torch

    dtype = torch.float16 if dtype is None else dtype
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_tensors(Path(path).with_suffix(".safetensors"), sd)
    save_json(Path(path).with_suffix(".json"), card)


def as_saved(model):
    """`model` with its float weights rounded, in place, to fp16 as `save_weights` stores them by default:
    what is measured on it is what the saved file gives."""
    import torch

    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.to(torch.float16))
    return model


def resolve(name_or_path: str | Path) -> Path:
    """'face68' → weights/face68.safetensors, a teacher's name → weights/teachers/<name>.safetensors, a
    name from before the lineup → its new name; a path is taken as given (suffix optional)."""
    p = Path(name_or_path)
    if p.suffix not in (".safetensors", ".json") and not p.parent.parts:
        name = OLD_NAMES.get(p.name, p.name)
        teacher = WEIGHTS_DIR / TEACHERS_DIR / f"{name}.json"
        p = teacher if teacher.exists() and not (WEIGHTS_DIR / f"{name}.json").exists() else WEIGHTS_DIR / name
    return p.with_suffix(".safetensors")


def weights_digest(weights_path: Path) -> str:
    """The safetensors file's sha256: a graph's sidecar records it, so a stale graph is never used."""
    return hashlib.sha256(Path(weights_path).read_bytes()).hexdigest()


def graph_paths(name_or_path: str | Path) -> tuple[Path, Path]:
    """A model's exported graph and its sidecar JSON (`python -m fkd.export`): weights/onnx/<name>.onnx and
    .onnx.json, apart from the cards, so that every .json beside a .safetensors is a model card."""
    weights = resolve(name_or_path)
    onnx = weights.parent / "onnx" / f"{weights.stem}.onnx"
    return onnx, sidecar_path(onnx)


def sidecar_path(onnx: Path) -> Path:
    """The JSON beside an exported graph: <graph>.onnx.json."""
    return onnx.with_name(onnx.name + ".json")


def read_card(name_or_path: str | Path) -> dict:
    card_path = resolve(name_or_path).with_suffix(".json")
    if not card_path.exists():
        raise WeightsError(f"{card_path}: model card not found (train it with train.py, or pick another model)")
    try:
        return json.loads(card_path.read_text())
    except json.JSONDecodeError as e:
        raise WeightsError(f"{card_path}: damaged model card ({e})") from None


def card_config(name_or_path: str | Path) -> tuple[ModelConfig, dict]:
    """The model's config and card, checked: a card without a valid config, or without its weights
    file beside it, is a WeightsError naming the file."""
    path = resolve(name_or_path)
    card = read_card(path)
    try:
        cfg = ModelConfig.from_dict(card["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{path.with_suffix('.json')}: model card has no valid 'config' ({e})") from None
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found")
    return cfg, card


def load_model(name_or_path: str | Path, device: str = "cpu"):
    """Rebuild the torch model from its card and load the tensors; eval mode, float32."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from fkd.models import build_model

    path = resolve(name_or_path)
    cfg, card = card_config(path)
    try:
        sd = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: damaged weights file ({e})") from None
    model = build_model(cfg)
    expected = model.state_dict()
    missing = set(expected) - set(sd)
    unexpected = set(sd) - set(expected)
    bad = [k for k in set(expected) & set(sd) if expected[k].shape != sd[k].shape]
    if missing or unexpected or bad:
        raise WeightsError(f"{path}: does not match the architecture in its card "
                           f"({len(missing)} missing, {len(unexpected)} unexpected, {len(bad)} wrong shapes)")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()})
    return model.to(device).eval(), card
