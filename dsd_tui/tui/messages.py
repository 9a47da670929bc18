"""Messages that background work sends to the screens (posted from workers, handled with @on)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from textual.message import Message

from .catalog import Catalog


@dataclass
class CatalogLoaded(Message):
    catalog: Catalog


@dataclass
class ExportFinished(Message):
    """An export subprocess ended: `path` is the ONNX file when it worked, `lines` its output."""

    ok: bool
    path: Path | None
    lines: list[str]
    max_abs_diff: float | None = None


@dataclass
class SamplesReady(Message):
    images: np.ndarray  # (N, C, H, W) float32 in [0, 1]
    seed: int
    steps: int
    label: int | None
    seconds: float
    sampler: str = "ddim"  # the solver the file walks (its metadata)
    distilled_steps: int | None = None  # the step count the model was distilled for (its metadata)
    path: Path | None = None  # the ONNX file sampled


@dataclass
class SolverExported(Message):
    """The sampler screen's export of another solver ended: `path` is the ONNX file when it worked."""

    steps: int
    solver: str
    path: Path | None
    lines: list[str]


@dataclass
class SamplerFailed(Message):
    error: str
