"""The progressive-distillation update (Salimans & Ho 2022): a frozen teacher's two DDIM steps become one.

For training images x0 noised to a student timestep t = t_2k of the teacher's N-step grid:

    x_t = α_t·x0 + σ_t·ε
    x_{t_2k+1}, x_{t_2k+2} = two teacher DDIM steps from x_t        (no gradient, 2 evaluations)
    x0̃ = the x0̂ whose one DDIM step t_2k → t_2k+2 lands on x_{t_2k+2}  (`ddim.x0_reaching`)
    loss = mean_i max(SNR(t_i), 1) · mean_pixels (x0̂_student(x_t, t) − x0̃)²   (1 evaluation, with gradient)

Three network evaluations per image and update, and training data: what DSD does without.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..ddim import add_noise, ddim_step, pred_to_x0_eps, x0_reaching
from ..schedule import NoiseSchedule
from .dsd import PairResult, weighted_x0_error


def pd_loss(
    student: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    teacher: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    eps: torch.Tensor,
    t: torch.Tensor,
    t_mid: torch.Tensor,
    t_next: torch.Tensor,
    schedule: NoiseSchedule,
    prediction: str,
    clip_x0: bool = True,
) -> PairResult:
    """The loss of one batch of training images at per-sample timesteps t > t_mid > t_next (t_next = −1: data)."""
    x_t = add_noise(x0, eps, t, schedule)
    with torch.no_grad():
        x_mid = ddim_step(teacher(x_t, t), x_t, t, t_mid, schedule, prediction, clip_x0).prev_sample
        x_next = ddim_step(teacher(x_mid, t_mid), x_mid, t_mid, t_next, schedule, prediction, clip_x0).prev_sample
        target = x0_reaching(x_t, x_next, t, t_next, schedule)
    x0_s, _ = pred_to_x0_eps(student(x_t, t), x_t, t, schedule, prediction)
    per_sample = weighted_x0_error(x0_s, target, t, schedule, "snr-trunc")
    return PairResult(per_sample.mean(), per_sample.detach(), x_next)
