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
        self._source: nn.Module | None = None  # the model whose parameters `_pairs` holds (views that follow it)
        self._pairs: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates)) if self.warmup else self.decay
        if model is not self._source:  # walk the module tree once per model, not once per update
            self._source = model
            self._pairs = list(self.shadow.parameters()), [p.detach() for p in model.parameters()]
        # One foreach kernel over all tensors rather than a Python loop (the default model has ~170).
        torch._foreach_lerp_(*self._pairs, 1 - d)
        for s, b in zip(self.shadow.buffers(), model.buffers()):
            s.copy_(b)
