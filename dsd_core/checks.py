"""Checks of single settings shared by the config dataclasses, the engine and the torch-free ONNX path: one
definition each, raising an `OptionError` that names the field."""

from __future__ import annotations

import math

from .errors import OptionError


def at_least(low: int, **settings: int) -> None:
    """Each setting (field=value) at least `low`."""
    for field, value in settings.items():
        if value < low:
            raise OptionError(f"{{{field}}} must be at least {low}, got {{value}}", value=value)


def positive(**settings: float) -> None:
    """Each setting a finite number above 0 (an infinite learning rate would run until its first NaN)."""
    for field, value in settings.items():
        if not (math.isfinite(value) and value > 0):
            raise OptionError(f"{{{field}}} must be a finite number above 0, got {{value}}", value=value)


def below_one(**settings: float) -> None:
    """Each setting in [0, 1): a probability or a decay."""
    for field, value in settings.items():
        if not 0 <= value < 1:
            raise OptionError(f"{{{field}}} must be in [0, 1), got {{value}}", value=value)


def check_guidance_scale(scale: float | None) -> None:
    """w of classifier-free guidance: None (the model's own) or a finite number ≥ 0."""
    if scale is not None and not (math.isfinite(scale) and scale >= 0):
        raise OptionError("{guidance} must be a finite number ≥ 0, got {scale}", scale=scale)


def check_threads(threads: int | None) -> None:
    """CPU threads: None (the default) or at least 1."""
    if threads is not None:
        at_least(1, threads=threads)
