"""The settings of a distillation run, checked when they are made, and where PD's training data come from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import defaults
from ..accel import check_amp
from ..checkpoint import LoadedModel
from ..errors import DsdError
from .dsd import WEIGHTS
from .methods import METHODS


@dataclass
class DistillConfig:
    method: str = defaults.DISTILL_METHOD
    schedule: str = defaults.DISTILL_SCHEDULE
    n_from: int = defaults.DISTILL_FROM
    n_to: int = defaults.DISTILL_TO
    updates: int = defaults.DISTILL_UPDATES
    batch: int = defaults.DISTILL_BATCH
    lr: float = defaults.DISTILL_LR
    pd_lr: float = 1e-4
    pd_stages: int = 0
    data: str = ""
    weight: str = "authors"
    ema_decay: float = 0.999
    ema_teacher: bool = True
    lockstep: bool = False
    teacher_chunks: int = 1  # DSD/TSD teacher on slices of the batch: lower peak memory, more time
    grad_clip: float = 1.0
    clip_x0: bool = True
    seed: int = defaults.DISTILL_SEED
    sample_every: int = 500
    checkpoint_every: int = 250
    histogram_every: int = 50
    guidance: float = 1.0  # classifier-free guidance w of a conditional model (1: plain conditional)
    amp: str = "off"  # off, bf16 or fp16: autocast of the network calls
    compile: bool = False  # torch.compile the network

    def __post_init__(self) -> None:
        check_amp(self.amp)
        if self.method not in METHODS:
            raise DsdError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.weight not in WEIGHTS:
            raise DsdError(f"unknown loss weight {self.weight!r}; choose one of {', '.join(WEIGHTS)}")
        for name in ("batch", "sample_every", "checkpoint_every", "histogram_every", "teacher_chunks"):
            if getattr(self, name) < 1:
                raise DsdError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.pd_lr > 0):
            raise DsdError(f"learning rates must be positive, got {self.lr} and {self.pd_lr}")
        if self.pd_stages < 0:
            raise DsdError(f"pd-stages must be at least 0, got {self.pd_stages}")
        if not 0 <= self.ema_decay < 1:
            raise DsdError(f"EMA decay must be in [0, 1), got {self.ema_decay}")


def training_data_spec(requested: str, base: LoadedModel) -> str:
    """PD's data: what the user named, else the data the base model's checkpoint says it was trained on."""
    if requested:
        return requested
    named = base.meta.get("provenance", {}).get("data", "")
    if named in ("digits", "digits:train"):
        return "digits"
    if named and Path(named).is_dir():
        return named
    raise DsdError("PD trains on the model's training data, which its checkpoint does not name: pass --data "
                   "(digits or an image folder)")
