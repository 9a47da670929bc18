"""The models shipped in `dsd_core/assets`, by name. No torch here: the terminal app lists them at start-up."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# Shipped models: the undistilled default (ε-prediction) and its DSD-distilled versions, one per step count; the
# same network trained for v-prediction and its DSD-distilled versions (better at every step count: what
# `dsd sample --steps N` picks); the class-conditional digits model (null class 10, for guidance) and its
# DSD-distilled 8-step version (w = 3); the colour model, class-conditional on the 10 emoji categories at 16×16
# (v-prediction, stored as float16, samples at w = 2 by default).
BUILTIN_MODELS = {name: f"{name}.safetensors" for name in (
    "digits", "digits-dsd8", "digits-dsd4", "digits-dsd2",
    "digits-v", "digits-v-dsd8", "digits-v-dsd4", "digits-v-dsd2",
    "digits-cond", "digits-cond-dsd8", "emoji16-cond", "emoji16-cond-dsd8", "emoji16-cond-dsd4",
    "emoji16-cond-dsd2")}


def builtin_path(name: str) -> Path:
    return Path(str(resources.files("dsd_core.assets").joinpath(BUILTIN_MODELS[name])))


def available_builtins() -> list[str]:
    return [name for name in BUILTIN_MODELS if builtin_path(name).is_file()]


def default_model(steps: int | None) -> str:
    """What `dsd sample` uses without --model: the best shipped model distilled for `steps` (for no `steps`, the
    best shipped few-step model, `defaults.SAMPLE_STEPS`), else the best undistilled one."""
    from .defaults import SAMPLE_STEPS

    steps = SAMPLE_STEPS if steps is None else steps
    shipped = available_builtins()
    candidates = (f"digits-v-dsd{steps}", f"digits-dsd{steps}", "digits-v", "digits")
    return next((name for name in candidates if name in shipped), "digits")


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A built-in model name (e.g. `digits`) or a checkpoint path."""
    name = str(name_or_path)
    return builtin_path(name) if name in BUILTIN_MODELS else Path(name)
