"""Where the work runs: CUDA when present, CPU otherwise, or what the user asked for."""

from __future__ import annotations

import torch

from .errors import DsdError, OptionError


def pick_device(requested: str | None = None) -> torch.device:
    """`None`/"auto" → cuda if available else cpu; "cuda" without a GPU is an error, not a silent fallback."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise DsdError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("{device} cuda was asked for but no CUDA GPU is available")
    if device.type not in ("cpu", "cuda"):
        raise DsdError(f"unsupported device {requested!r}; use auto, cpu, cuda or cuda:N")
    return device
