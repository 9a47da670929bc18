"""The deterministic DDIM step (η = 0) and conversions between ε-, x0- and v-predictions.

This is the only place in dsd where the DDIM update is written. Every tensor of timesteps is per sample, so a
batch may mix noise levels (distillation needs that). With α_t = √ᾱ_t and σ_t = √(1−ᾱ_t):

    x0̂ = (x_t − σ_t·ε̂) / α_t,    ε̂ = (x_t − α_t·x0̂) / σ_t,    v = α_t·ε − σ_t·x0,
    x_s = α_s·x0̂ + σ_s·ε̂.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .errors import DsdError
from .schedule import NoiseSchedule

PREDICTIONS = ("eps", "x0", "v")


def _coefs(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """α_t and σ_t for a per-sample t, shaped to broadcast over `like` (B, C, H, W)."""
    t = torch.as_tensor(t, device=like.device)
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    alpha, sigma = schedule.alpha_sigma(t)
    shape = (-1,) + (1,) * (like.ndim - 1)
    return alpha.to(like.dtype).view(shape), sigma.to(like.dtype).view(shape)


def check_prediction(kind: str) -> str:
    if kind not in PREDICTIONS:
        raise DsdError(f"unknown prediction type {kind!r}; choose one of {', '.join(PREDICTIONS)}")
    return kind


def pred_to_x0_eps(
    pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule, kind: str = "eps"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0̂, ε̂) from a model output of the given kind."""
    alpha, sigma = _coefs(schedule, t, x_t)
    if kind == "eps":
        return (x_t - sigma * pred) / alpha, pred
    if kind == "x0":
        return pred, (x_t - alpha * pred) / sigma
    if kind == "v":
        return alpha * x_t - sigma * pred, sigma * x_t + alpha * pred
    raise DsdError(f"unknown prediction type {kind!r}; choose one of {', '.join(PREDICTIONS)}")


def target_for(
    kind: str, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """What a model of the given kind should output at (x_t, t) when x_t = α_t·x0 + σ_t·ε."""
    alpha, sigma = _coefs(schedule, t, x0)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return alpha * eps - sigma * x0
    raise DsdError(f"unknown prediction type {kind!r}; choose one of {', '.join(PREDICTIONS)}")


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Forward diffusion q(x_t | x0): α_t·x0 + σ_t·ε."""
    alpha, sigma = _coefs(schedule, t, x0)
    return alpha * x0 + sigma * eps


@dataclass
class DDIMStep:
    """One step's result: the next sample and the x0 estimate that produced it."""

    prev_sample: torch.Tensor
    pred_x0: torch.Tensor


def ddim_step(
    pred: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    s: torch.Tensor,
    schedule: NoiseSchedule,
    kind: str = "eps",
    clip_x0: bool = False,
) -> DDIMStep:
    """Move x_t at timestep t to timestep s < t (s = −1 is clean data), per sample.

    With clip_x0, x0̂ is clamped to [−1, 1] and ε̂ is re-derived from the clamped x0̂, so the step stays an
    exact DDIM step of a consistent (x0̂, ε̂) pair (diffusers' `use_clipped_model_output=True`).
    """
    # 1. the model's estimate of clean data and of the noise
    x0, eps = pred_to_x0_eps(pred, x_t, t, schedule, kind)
    # 2. optional clipping, keeping ε̂ consistent with the clipped x0̂
    if clip_x0:
        alpha_t, sigma_t = _coefs(schedule, t, x_t)
        x0 = x0.clamp(-1.0, 1.0)
        eps = (x_t - alpha_t * x0) / sigma_t
    # 3. re-noise the estimate to level s along the same ε̂
    alpha_s, sigma_s = _coefs(schedule, s, x_t)
    return DDIMStep(prev_sample=alpha_s * x0 + sigma_s * eps, pred_x0=x0)


def x0_reaching(
    x_t: torch.Tensor, x_s: torch.Tensor, t: torch.Tensor, s: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """The x0̂ whose single DDIM step t → s from x_t lands exactly on x_s: the step solved for x0̂.

    x_s = α_s·x0̂ + σ_s·(x_t − α_t·x0̂)/σ_t  ⇒  x0̂ = (x_s − (σ_s/σ_t)·x_t) / (α_s − (σ_s/σ_t)·α_t).
    Progressive distillation's target (s two teacher steps below t); s = −1 gives x0̂ = x_s.
    """
    alpha_t, sigma_t = _coefs(schedule, t, x_t)
    alpha_s, sigma_s = _coefs(schedule, s, x_t)
    ratio = sigma_s / sigma_t
    return (x_s - ratio * x_t) / (alpha_s - ratio * alpha_t)


Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ddim_sample(
    model: Denoiser,
    noise: torch.Tensor,
    pairs: list[tuple[int, int]],
    schedule: NoiseSchedule,
    kind: str = "eps",
    clip_x0: bool = False,
    callback: Callable[[dict], None] | None = None,
) -> torch.Tensor:
    """Walk the (t, s) pairs from pure noise to data with one network evaluation per pair."""
    x = noise
    for i, (t, s) in enumerate(pairs):
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        ss = torch.full_like(tt, s)
        out = ddim_step(model(x, tt), x, tt, ss, schedule, kind, clip_x0)
        x = out.prev_sample
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": out.pred_x0})
    return x
