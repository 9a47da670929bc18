"""The AdamW every update of dsd uses, built with fused kernels where this torch and device have them.

A fused AdamW updates all parameter tensors in one kernel instead of a Python loop over ~170 tensors: a cost
DSD, TSD and PD share, so cutting it moves their wall-time ratios towards what their network evaluations
alone would give (docs/benchmarks.md, "Engine costs").
"""

from __future__ import annotations

from typing import Iterable

import torch


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW with fused=True when supported (torch ≥ 2.4 on CPU and CUDA), the default implementation else."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):  # a device or dtype without a fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
