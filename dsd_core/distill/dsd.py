"""The DSD update: one student step with gradient, one teacher step without, on the model's own trajectory.

For trajectories parked at t_2k (pool), with the same network as student and teacher (or a frozen copy for
TSD, or the EMA with `--ema-teacher`):

    x0̂_s = x0̂_θ(x_{t_2k}, t_2k)                     student, with gradient
    x_{t_2k+1} = DDIM(x_{t_2k}; x0̂_s) (detached)
    x0̂_T = x0̂_teacher(x_{t_2k+1}, t_2k+1)            teacher, no gradient
    x_{t_2k+2} = DDIM(x_{t_2k+1}; x0̂_T)              where the trajectory continues
    loss = mean_i w(t_2k,i) · mean_pixels (x0̂_s − x0̂_T)²

Two network evaluations per trajectory and update. With `teacher_first` the teacher takes the first half-step
too (x_{t_2k+1} = DDIM(x_{t_2k}; x0̂_teacher), a third evaluation): the target is then fixed by x_{t_2k} alone,
where the student's own first step leaves it free on a low-noise pair (docs/benchmarks.md, "Why the stage
teacher still drifts at 2 steps"). The teacher's x0̂ (and every DDIM step) is clipped to
[−1, 1] when `clip_x0`; the student's x0̂ in the loss is not, so its gradient never vanishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..ddim import ddim_step, pred_to_x0_eps
from ..errors import DsdError
from ..schedule import NoiseSchedule

WEIGHTS = ("authors", "snr-trunc", "constant")


def loss_weight(kind: str, t: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """authors: max(logSNR, 1); snr-trunc: max(SNR, 1) (progressive distillation's); constant: 1."""
    if kind == "authors":
        return schedule.log_snr(t).clamp(min=1.0)
    if kind == "snr-trunc":
        return schedule.log_snr(t).exp().clamp(min=1.0)
    if kind == "constant":
        return torch.ones(t.shape, dtype=torch.float64, device=t.device)
    raise DsdError(f"unknown loss weight {kind!r}; choose one of {', '.join(WEIGHTS)}")


def weighted_x0_error(x0: torch.Tensor, target: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule,
                      weight: str) -> torch.Tensor:
    """Per sample: w(t) · mean over pixels of (x0̂ − target)², in float32; the loss of DSD, PD and the anchor."""
    err = (x0.float() - target.float()).pow(2).flatten(1).mean(1)
    return loss_weight(weight, t, schedule).to(err.dtype) * err


def in_chunks(net: Callable, chunks: int) -> Callable:
    """`net(x, t, labels)` evaluated on `chunks` slices of the batch in turn, concatenated.

    DSD's teacher must run while the student's autograd graph is alive (its input is the student's step), so
    the teacher's own activations add to the student's at the update's peak; PD's teacher runs before the
    student and adds a frozen weight copy instead. Slicing the teacher's batch divides that addition, at the
    cost of smaller, less efficient network calls.
    """
    if chunks <= 1:
        return net

    def run(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        parts = zip(x.chunk(chunks), t.chunk(chunks), [None] * chunks if labels is None else labels.chunk(chunks))
        return torch.cat([net(xi, ti, li) for xi, ti, li in parts])

    return run


@dataclass
class PairResult:
    loss: torch.Tensor  # scalar, with gradient
    per_sample: torch.Tensor  # (B,) weighted losses, detached
    x_next: torch.Tensor  # x_{t_2k+2}, detached: where each trajectory continues


def dsd_pair_loss(
    student: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    teacher: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor,
    t_mid: torch.Tensor,
    t_next: torch.Tensor,
    schedule: NoiseSchedule,
    prediction: str,
    weight: str = "authors",
    clip_x0: bool = True,
    teacher_first: bool = False,
) -> PairResult:
    """The loss of one batch of pairs (per-sample timesteps t > t_mid > t_next, t_next = −1 for data)."""
    pred_s = student(x, t)
    x0_s, _ = pred_to_x0_eps(pred_s, x, t, schedule, prediction)
    with torch.no_grad():
        first = teacher(x, t) if teacher_first else pred_s.detach()
        x_mid = ddim_step(first, x, t, t_mid, schedule, prediction, clip_x0).prev_sample
        step_t = ddim_step(teacher(x_mid, t_mid), x_mid, t_mid, t_next, schedule, prediction, clip_x0)
    per_sample = weighted_x0_error(x0_s, step_t.pred_x0, t, schedule, weight)
    return PairResult(per_sample.mean(), per_sample.detach(), step_t.prev_sample.detach())
