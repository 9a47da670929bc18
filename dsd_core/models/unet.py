"""A compact UNet for small images: sinusoidal time embedding, GroupNorm ResBlocks, optional self-attention
and an optional class embedding with a null class (for classifier-free guidance).

Everything a checkpoint needs to rebuild the network is in `UNetConfig`, saved beside the weights. Only plain
ops are used (conv, group norm, matmul, softmax) so the network exports to ONNX with the legacy exporter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import config_from_file
from ..errors import DsdError
from ..limits import MAX_BLOCKS, MAX_CHANNELS, MAX_CLASSES, MAX_IMAGE_SIDE, MAX_LEVELS, MAX_WIDTH, size


@dataclass
class UNetConfig:
    """The architecture of a `UNet`. `num_classes=None` makes it unconditional; otherwise class id
    `num_classes` is the null (unconditional) class."""

    image_size: int = 8
    in_channels: int = 1
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (2,)
    num_groups: int = 16
    dropout: float = 0.0
    num_classes: int | None = None

    def __post_init__(self) -> None:
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        self.attention_levels = tuple(int(a) for a in self.attention_levels)
        self.check_sizes()
        down = 2 ** (len(self.channel_mults) - 1)
        if self.image_size % down:
            raise DsdError(
                f"image size {self.image_size} is not divisible by {down} ({len(self.channel_mults)} resolutions)"
            )
        for m in self.channel_mults:
            if (self.base_channels * m) % self.num_groups:
                raise DsdError(f"channels {self.base_channels * m} not divisible by {self.num_groups} groups")

    def check_sizes(self) -> None:
        """Every size within `dsd_core/limits.py` (and above 0) before anything is built: a config from a file
        or a flag can claim 10⁹ channels, or none."""
        for name, limit, low in (("image_size", MAX_IMAGE_SIDE, 1), ("in_channels", MAX_CHANNELS, 1),
                                 ("base_channels", MAX_WIDTH, 1), ("num_res_blocks", MAX_BLOCKS, 0),
                                 ("num_groups", MAX_WIDTH, 1)):
            size(f"the UNet config's {name}", getattr(self, name), limit, low)
        if self.num_classes is not None:
            size("the UNet config's num_classes", self.num_classes, MAX_CLASSES)
        if not 1 <= len(self.channel_mults) <= MAX_LEVELS or len(self.attention_levels) > MAX_LEVELS:
            raise DsdError(f"the UNet config must list 1 to {MAX_LEVELS} resolutions (channel_mults) and at most "
                           f"as many attention_levels")
        for m in self.channel_mults:
            size("a layer width of the UNet config (base_channels × channel_mults)", self.base_channels * m, MAX_WIDTH)
        if min(self.attention_levels, default=0) < 0 or not 0 <= self.dropout < 1:
            raise DsdError("the UNet config's attention_levels must be ≥ 0 and its dropout in [0, 1)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        d["attention_levels"] = list(self.attention_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: object = "the UNet config") -> "UNetConfig":
        """The config a file holds (`source` names it in errors), each value checked for its type and size;
        absent keys keep their defaults."""
        unknown = set(d) - {f.name for f in fields(cls)} if isinstance(d, dict) else set()
        if unknown:
            raise DsdError(f"{source}: unknown UNet config keys: {', '.join(sorted(unknown))}")
        return config_from_file(cls, d, source, complete=False)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (float) timesteps, as in the Transformer and DDPM."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, with the time (and class) embedding added as a per-channel shift."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over spatial positions, written with matmul + softmax for ONNX."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) / math.sqrt(c), dim=-1)  # (b, hw, hw)
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj(out)


class Level(nn.Module):
    """The ResBlocks (and attention) of one resolution."""

    def __init__(self, chans: list[tuple[int, int]], emb_dim: int, groups: int, dropout: float, attn: bool):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(a, b, emb_dim, groups, dropout) for a, b in chans)
        self.attns = nn.ModuleList(Attention(b, groups) if attn else nn.Identity() for _, b in chans)


class UNet(nn.Module):
    """ε/x0/v-predictor: forward(x, t[, class_labels]) → tensor shaped like x."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        c0 = config.base_channels
        emb_dim = 4 * c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(config.num_classes + 1, emb_dim) if config.num_classes else None
        self.stem = nn.Conv2d(config.in_channels, c0, 3, padding=1)

        chans = [c0 * m for m in config.channel_mults]
        g, p = config.num_groups, config.dropout
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, cur = [c0], c0
        for level, c in enumerate(chans):
            pairs = []
            for _ in range(config.num_res_blocks):
                pairs.append((cur, c))
                cur = c
                skips.append(c)
            self.down.append(Level(pairs, emb_dim, g, p, level in config.attention_levels))
            last = level == len(chans) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1))
            if not last:
                skips.append(c)

        self.mid = Level([(cur, cur), (cur, cur)], emb_dim, g, p, attn=True)

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(chans))):
            c = chans[level]
            pairs = []
            for _ in range(config.num_res_blocks + 1):
                pairs.append((cur + skips.pop(), c))
                cur = c
            self.up.append(Level(pairs, emb_dim, g, p, level in config.attention_levels))
            self.upsample.append(nn.Identity() if level == 0 else nn.Conv2d(c, c, 3, padding=1))

        self.out_norm = nn.GroupNorm(g, cur)
        self.out_conv = nn.Conv2d(cur, config.in_channels, 3, padding=1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))
        if self.class_emb is not None:
            if class_labels is None:  # unconditional: the null class
                class_labels = torch.full_like(t, self.config.num_classes, dtype=torch.long)
            emb = emb + self.class_emb(class_labels.long())

        h = self.stem(x)
        hs = [h]
        for level, down in zip(self.down, self.downsample):
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(h, emb))
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        for block, attn in zip(self.mid.blocks, self.mid.attns):
            h = attn(block(h, emb))
        for level, up in zip(self.up, self.upsample):
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), emb))
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out_conv(F.silu(self.out_norm(h)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
