"""A run's view of its own quality without data: does the distilled model still draw what the starting model
drew from the same noise?

Trajectory distillation should reproduce the starting model's noise → image map at fewer steps. So a fixed
set of noises is sampled once by the starting model on the finest grid (the reference); every few updates the
EMA model samples the same noises at the current target step count, and the mean squared error against the
reference (and its PSNR) is logged. It falls while the student learns and rises when it drifts off the
starting model's map, which the loss does not show. The noises have a seed of their own, so the check never
changes the run; the reference is recomputed from the starting model on resume (same noises, same weights).
"""

from __future__ import annotations

import math

import torch

from ..checkpoint import LoadedModel
from ..sampling import sample

NOISE_SEED = 2**31 - 1  # not the run's seed: the same noises whatever the run
PEAK_TO_PEAK = 2.0  # images live in [−1, 1]


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB of [−1, 1] images; capped at 99 dB for identical images."""
    return 99.0 if mse <= 0 else min(99.0, 10 * math.log10(PEAK_TO_PEAK**2 / mse))


class Agreement:
    """The reference of `num` fixed noises and how close a model's samples come to it."""

    def __init__(self, start: LoadedModel, finest_steps: int, num: int, device: torch.device,
                 num_classes: int | None = None, guidance: float = 1.0):
        self.num, self.device, self.guidance = num, device, guidance
        self.classes = None if num_classes is None else torch.arange(num) % num_classes
        self.reference = self.draw(start, finest_steps)

    def draw(self, loaded: LoadedModel, steps: int) -> torch.Tensor:
        return sample(loaded, steps, num=self.num, seed=NOISE_SEED, device=self.device, classes=self.classes,
                      guidance=self.guidance)

    def score(self, loaded: LoadedModel, steps: int) -> tuple[float, float]:
        """(mean squared error, PSNR) of `loaded`'s samples at `steps` steps against the reference."""
        mse = float(((self.draw(loaded, steps) - self.reference) ** 2).mean())
        return mse, psnr(mse)
