"""Exponential moving average of a model's weights, the copy used for sampling."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps `shadow` = decay·shadow + (1 − decay)·weights, with the decay warmed up as (1+n)/(10+n) so the
    first updates are not dominated by the random initialisation. Without `warmup` (distillation, where the
    starting weights are already good) the decay is constant."""

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        self.decay, self.warmup = decay, warmup
        self.num_updates = 0
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates)) if self.warmup else self.decay
        for s, p in zip(self.shadow.parameters(), model.parameters()):
            s.lerp_(p.detach(), 1 - d)
        for s, b in zip(self.shadow.buffers(), model.buffers()):
            s.copy_(b)
