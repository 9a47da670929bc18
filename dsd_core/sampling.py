"""Sampling a model: reproducible initial noise and the batched sampler around `solvers.solver_sample` (DDIM by
default; DPM-Solver++ 2M/3M or UniPC on request, on the same grid and noise)."""

from __future__ import annotations

from typing import Callable

import torch

from .checkpoint import LoadedModel
from .guidance import bind, null_class
from .nfe import NFECounter
from .noise import initial_noise
from .solvers import solver_sample
from .solvers_plan import check_sampler
from .timesteps import step_pairs

__all__ = ["initial_noise", "sample"]


@torch.no_grad()
def sample(
    loaded: LoadedModel,
    steps: int,
    num: int = 64,
    seed: int = 0,
    batch: int = 256,
    device: str | torch.device = "cpu",
    spacing: str = "trailing",
    clip_x0: bool = True,
    on_batch: Callable[[int], None] | None = None,
    counter: NFECounter | None = None,
    classes: torch.Tensor | None = None,
    guidance: float = 1.0,
    sampler: str = "ddim",
) -> torch.Tensor:
    """`num` images in [−1, 1] on the CPU. All noise is drawn up front, so the batch size never changes
    the images. Pass an `NFECounter` to count the network evaluations; `classes` (one id per image) and
    `guidance` (w of `guidance.py`) for a class-conditional model; `sampler` one of `solvers_plan.SAMPLERS`
    (`clip_x0` clamps each step's x0 estimate whichever it is)."""
    check_sampler(sampler)
    cfg = loaded.model.config
    noise = torch.from_numpy(initial_noise(seed, num, (cfg.in_channels, cfg.image_size, cfg.image_size)))
    pairs = step_pairs(steps, loaded.schedule.num_timesteps, spacing)
    model = loaded.model.to(device).eval()
    null = null_class(loaded.model)
    if counter is not None:
        model = counter.wrap(model)
    out = []
    for start in range(0, num, batch):
        x = noise[start : start + batch].to(device)
        labels = None if classes is None else torch.as_tensor(classes[start : start + batch]).long().to(device)
        x = solver_sample(sampler, bind(model, labels, guidance, null), x, pairs, loaded.schedule, loaded.prediction,
                          clip_x0)
        out.append(x.clamp(-1, 1).cpu())
        if on_batch is not None:
            on_batch(x.shape[0])
    return torch.cat(out) if out else noise[:0]
