"""DPM-Solver++ (Lu et al. 2022, arXiv 2211.01095): the multistep solver in data prediction, orders 1–3.

With λ = log(α/σ) and h = λ_t − λ_s, the exact solution of the probability-flow ODE from s to t is
x_t = (σ_t/σ_s)·x_s + σ_t·∫ e^λ·x0̂(λ) dλ; the k-th order step approximates x0̂ by a polynomial through the last
k data predictions (finite differences D1, D2 in λ). Order 1 is DDIM exactly. The update rules are diffusers'
DPMSolverMultistepScheduler (midpoint form for order 2), checked against it in tests/test_solvers_diffusers.py.

The coefficients are Python floats from the float64 ᾱ table, so a float64 walk is float64 throughout and the
traced ONNX graph holds them as constants: between network calls the sampler is plain arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .ddim import Denoiser, pred_to_x0_eps
from .schedule import NoiseSchedule
from .solvers_plan import dpm_orders


@dataclass(frozen=True)
class Level:
    """α, σ and λ = log(α/σ) at one timestep (λ = +∞ at t = −1, clean data)."""

    alpha: float
    sigma: float
    lam: float


def level(schedule: NoiseSchedule, t: int) -> Level:
    alpha, sigma = (float(v) for v in schedule.alpha_sigma(int(t)))
    return Level(alpha, sigma, math.inf if sigma == 0.0 else math.log(alpha) - math.log(sigma))


def data_prediction(model: Denoiser, x: torch.Tensor, t: int, schedule: NoiseSchedule, kind: str,
                    clip_x0: bool) -> torch.Tensor:
    """x0̂ at (x, t) from one network evaluation, through ddim.py's conversions; optionally clamped to [−1, 1]
    (the analogue of DDIM's clipping: both solvers take x0̂ alone, so clamping it is the whole effect)."""
    tt = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    x0 = pred_to_x0_eps(model(x, tt), x, tt, schedule, kind)[0]
    return x0.clamp(-1.0, 1.0) if clip_x0 else x0


def dpm_pp_update(x: torch.Tensor, x0s: list[torch.Tensor], levels: list[Level], to: Level,
                  order: int) -> torch.Tensor:
    """One DPM-Solver++ step from the level of `x` (levels[-1]) to `to`, with the data predictions `x0s` made at
    `levels` (newest last; `order` of them are used)."""
    now, m0 = levels[-1], x0s[-1]
    if to.sigma == 0.0:  # landing on clean data: the first-order step returns x0̂ itself (h = ∞)
        return m0
    h = to.lam - now.lam
    phi = math.expm1(-h)  # e^{−h} − 1
    out = (to.sigma / now.sigma) * x - (to.alpha * phi) * m0
    if order == 1:
        return out
    r0 = (now.lam - levels[-2].lam) / h
    d1_0 = (m0 - x0s[-2]) * (1.0 / r0)
    if order == 2:
        return out - (0.5 * to.alpha * phi) * d1_0
    r1 = (levels[-2].lam - levels[-3].lam) / h
    d1_1 = (x0s[-2] - x0s[-3]) * (1.0 / r1)
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    d2 = (d1_0 - d1_1) * (1.0 / (r0 + r1))
    return out + (to.alpha * (phi / h + 1.0)) * d1 - (to.alpha * ((phi + h) / h**2 - 0.5)) * d2


def dpm_solver_pp_sample(
    model: Denoiser,
    noise: torch.Tensor,
    pairs: list[tuple[int, int]],
    schedule: NoiseSchedule,
    kind: str = "eps",
    order: int = 2,
    clip_x0: bool = False,
    lower_order_final: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> torch.Tensor:
    """Walk the (t, s) pairs of a DDIM grid with DPM-Solver++ of `order` (2: 2M, 3: 3M), one network evaluation
    per pair. The multistep history (the last `order` data predictions) lives in this loop."""
    x, x0s, levels = noise, [], []
    for i, ((t, s), k) in enumerate(zip(pairs, dpm_orders(len(pairs), order, lower_order_final))):
        x0 = data_prediction(model, x, t, schedule, kind, clip_x0)
        x0s, levels = (x0s + [x0])[-order:], (levels + [level(schedule, t)])[-order:]
        x = dpm_pp_update(x, x0s, levels, level(schedule, s), k)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": x0})
    return x
