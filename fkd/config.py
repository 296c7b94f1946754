"""The architecture settings a model card stores: the runtime reads them without torch, and
fkd/models.py builds the network from them (`build_model(cfg)`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

ARCHS = ("nose_cnn", "imm_cnn", "resnet18", "pipnet")


@dataclass
class ModelConfig:
    arch: str = "pipnet"
    n_points: int = 68
    in_channels: int = 3
    input_w: int = 128
    input_h: int = 128
    loss: str = "wing"          # regression heads: mse | l1 | wing
    width: int = 64             # resnet18 base width (64 = torchvision's)
    blurpool: bool = False      # resnet18: anti-aliased downsampling (Zhang 2019)
    hidden: int = 256           # imm_cnn: fully connected width
    grid_stride: int = 16       # pipnet: input pixels per grid cell (16, or 8 with stride-8 features)
    upsample: str = "nearest"   # pipnet: how coarse features are brought to the grid (nearest | bilinear)
    mix_kernel: int = 3         # pipnet: depthwise kernel of the layer that mixes the merged features
    offset_weight: float = 1.0  # pipnet: weight of the offset L1 against the cell cross-entropy
    context: bool = True        # pipnet: merge the stride-32 stage (False: ~30 % less time per face, less context)
    mix_width: int = 192        # pipnet: channels the head reads (its 1×1 convs are the costliest layers at stride 8)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        cfg = cls(**d)
        if cfg.arch not in ARCHS:
            raise ValueError(f"unknown architecture {cfg.arch!r}; expected one of {ARCHS}")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)
