"""Sampling a model: reproducible initial noise and the batched sampler around `solvers.solver_sample` (DDIM by
default; DPM-Solver++ 2M/3M or UniPC on request, on the same grid and noise).

Memory is bounded by the batch, not by the number of images: `sample_batches` draws each batch's noise when it
needs it (`noise.NoiseStream`, the same stream as one up-front draw) and hands each batch on once it is checked."""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from .checkpoint import LoadedModel
from .errors import DsdError
from .guidance import bind, null_class
from .limits import check_batch
from .nfe import NFECounter
from .noise import NoiseStream, initial_noise
from .solvers import solver_sample
from .solvers_plan import check_sampler
from .timesteps import step_pairs

__all__ = ["initial_noise", "sample", "sample_batches", "check_images"]


def check_images(x: torch.Tensor, shape: tuple[int, ...], first: int, seed: int) -> None:
    """A sampled batch is what the model promises, or nothing is written: the shape it makes, finite values (a
    model with NaN weights, or one that diverges at these settings, would otherwise write grey or black images)."""
    if tuple(x.shape) != tuple(shape):
        raise DsdError(f"the model returned images of shape {tuple(x.shape)[1:]}, not the {tuple(shape)[1:]} its "
                       "config says; nothing written")
    if not bool(torch.isfinite(x).all()):
        raise DsdError(f"the model produced non-finite values (NaN or inf) for images {first}…{first + shape[0] - 1} "
                       f"of seed {seed}: its weights are broken or it diverges at these settings; nothing written")


@torch.no_grad()
def sample_batches(
    loaded: LoadedModel,
    steps: int,
    num: int = 64,
    seed: int = 0,
    batch: int = 256,
    device: str | torch.device = "cpu",
    spacing: str = "trailing",
    clip_x0: bool = True,
    counter: NFECounter | None = None,
    classes: torch.Tensor | None = None,
    guidance: float = 1.0,
    sampler: str = "ddim",
) -> Iterator[torch.Tensor]:
    """`sample`'s images one batch at a time (in [−1, 1], on the CPU), each checked by `check_images`: the
    noise of a batch is drawn when it is sampled, so memory grows with `batch`, never with `num`."""
    check_sampler(sampler)
    cfg = loaded.model.config
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    batch = max(1, min(batch, num))
    check_batch(batch, shape[0] * shape[1] * shape[2])
    pairs = step_pairs(steps, loaded.schedule.num_timesteps, spacing)
    model = loaded.model.to(device).eval()
    null = null_class(loaded.model)
    if counter is not None:
        model = counter.wrap(model)
    noise = NoiseStream(seed, shape)
    for start in range(0, num, batch):
        n = min(batch, num - start)
        x = torch.from_numpy(noise.draw(n)).to(device)
        labels = None if classes is None else torch.as_tensor(classes[start : start + n]).long().to(device)
        x = solver_sample(sampler, bind(model, labels, guidance, null), x, pairs, loaded.schedule, loaded.prediction,
                          clip_x0)
        check_images(x, (n, *shape), start, seed)
        yield x.clamp(-1, 1).cpu()


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
    """`num` images in [−1, 1] on the CPU. Image i gets the i-th noise of the seed's stream, so the batch size
    never changes the images. Pass an `NFECounter` to count the network evaluations; `classes` (one id per
    image) and `guidance` (w of `guidance.py`) for a class-conditional model; `sampler` one of
    `solvers_plan.SAMPLERS` (`clip_x0` clamps each step's x0 estimate whichever it is). Holds all `num` images:
    writers of many images use `sample_batches`."""
    out = []
    for x in sample_batches(loaded, steps, num, seed, batch, device, spacing, clip_x0, counter, classes, guidance,
                            sampler):
        out.append(x)
        if on_batch is not None:
            on_batch(x.shape[0])
    if out:
        return torch.cat(out)
    cfg = loaded.model.config
    return torch.zeros((0, cfg.in_channels, cfg.image_size, cfg.image_size))
