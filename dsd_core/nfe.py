"""Counting network evaluations (NFE): the cost measure that distillation trades against quality."""

from __future__ import annotations

from typing import Callable

import torch


class NFECounter:
    """Counts every image a wrapped denoiser evaluates; `per_sample` = evaluations / images produced.

    Counted at the call, not computed from the step count, so guidance (two evaluations per step) or a
    sampler that skips steps is measured as it really ran.
    """

    def __init__(self) -> None:
        self.evaluations = 0

    def wrap(self, model: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def counted(x: torch.Tensor, t: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            self.evaluations += x.shape[0]
            return model(x, t, *args, **kwargs)

        return counted

    def per_sample(self, num_samples: int) -> float:
        return self.evaluations / max(1, num_samples)
