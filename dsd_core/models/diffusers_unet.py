"""An adapter that makes a diffusers `UNet2DModel` look like dsd's UNet: forward(x, t[, class]) → tensor, and a
`config` with the image size, channels and classes the engine reads. diffusers is imported lazily (optional)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..checks import json_type
from ..errors import DsdError
from ..limits import (
    MAX_BLOCKS,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_IMAGE_SIDE,
    MAX_LEVELS,
    MAX_TIMESTEPS,
    MAX_WIDTH,
    size_in_file,
)

MODEL_TYPE = "diffusers-unet2d"
INSTALL_HINT = "pip install 'dsd-distill[diffusers]' (or: pip install diffusers)"


def import_diffusers():
    """diffusers, or a one-line error that says how to install it."""
    try:
        import diffusers
    except ImportError:
        raise DsdError(f"diffusers models need the diffusers package: {INSTALL_HINT}") from None
    return diffusers


# the sizes of a UNet2DModel config that size its network, with their limits (absent or null: diffusers' default)
UNET2D_SIZES = {"in_channels": MAX_CHANNELS, "out_channels": MAX_CHANNELS, "layers_per_block": MAX_BLOCKS,
                "norm_num_groups": MAX_WIDTH, "attn_norm_num_groups": MAX_WIDTH, "attention_head_dim": MAX_WIDTH,
                "time_embedding_dim": MAX_WIDTH, "num_class_embeds": MAX_CLASSES,
                "num_train_timesteps": MAX_TIMESTEPS}


def check_unet2d_config(config: object, source: object, what: str = "") -> None:
    """Every size of a UNet2DModel config (`what`: how messages name it) within `dsd_core/limits.py`, before
    diffusers builds it: it allocates the whole network before it reads a weight, so a config.json claiming 10⁶
    channels would take all memory, and one claiming 0 would fail deep inside diffusers."""
    if not isinstance(config, dict):
        raise DsdError(f"{source}: {what.strip() or 'the UNet config'} must be a JSON object, not {json_type(config)}")
    for name, limit in UNET2D_SIZES.items():
        if config.get(name) is not None:
            size_in_file(source, what + name, config[name], limit)
    side = config.get("sample_size")
    for v in side if isinstance(side, list) else [side]:
        if v is not None:
            size_in_file(source, what + "sample_size", v, MAX_IMAGE_SIDE)
    widths = config.get("block_out_channels", [1])
    if not isinstance(widths, list) or not 1 <= len(widths) <= MAX_LEVELS:
        raise DsdError(f"{source}: {what}block_out_channels must list 1 to {MAX_LEVELS} resolutions")
    for width in widths:
        size_in_file(source, f"{what}block_out_channels (a layer width)", width, MAX_WIDTH)


@dataclass
class DiffusersConfig:
    """What dsd needs to know of a UNet2DModel; `unet` is its own config (diffusers rebuilds it from that)."""

    image_size: int
    in_channels: int
    num_classes: int | None = None  # diffusers UNets have no null class: guidance is not offered
    unet: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "in_channels": self.in_channels, "num_classes": self.num_classes,
                "unet": self.unet}

    @classmethod
    def from_dict(cls, d: dict) -> "DiffusersConfig":
        return cls(int(d["image_size"]), int(d["in_channels"]), d.get("num_classes"), dict(d["unet"]))


class DiffusersUNet(nn.Module):
    model_type = MODEL_TYPE

    def __init__(self, unet: nn.Module):
        super().__init__()
        cfg = dict(unet.config)
        size = cfg.get("sample_size")
        if isinstance(size, (list, tuple)):
            if len(set(size)) != 1:
                raise DsdError(f"only square images are supported; this UNet makes {tuple(size)}")
            size = size[0]
        if size is None or cfg.get("in_channels") != cfg.get("out_channels"):
            raise DsdError("the UNet2DModel must predict an image of its input's shape (in_channels = out_channels)")
        if cfg.get("num_class_embeds") or cfg.get("class_embed_type"):
            raise DsdError("class-conditional diffusers UNets are not supported (no null class for guidance)")
        self.unet = unet
        config = {k: v for k, v in cfg.items() if not k.startswith("_")}
        config["_class_name"] = type(unet).__name__
        self.config = DiffusersConfig(int(size), int(cfg["in_channels"]), None, _jsonable(config))

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(x, t, return_dict=False)[0]

    @classmethod
    def from_config(cls, config: dict) -> "DiffusersUNet":
        """An untrained UNet of a saved config (the checkpoint's weights are loaded after)."""
        diffusers = import_diffusers()
        unet_config = {k: v for k, v in DiffusersConfig.from_dict(config).unet.items() if k != "_class_name"}
        return cls(diffusers.UNet2DModel.from_config(unet_config))


def _jsonable(d: dict) -> dict:
    """diffusers configs hold tuples (→ lists) and sometimes non-JSON values (dropped)."""
    import json

    out = {}
    for k, v in d.items():
        v = list(v) if isinstance(v, tuple) else v
        try:
            json.dumps(v)
        except TypeError:
            continue
        out[k] = v
    return out
