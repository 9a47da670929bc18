"""UniPC (Zhao et al. 2023, arXiv 2302.04867) in diffusers' default form: data prediction, B(h) = e^{−h} − 1
("bh2"), order 2, the corrector UniC after every step but the first.

The predictor UniP-2 with bh2 is DPM-Solver++(2M) exactly (the same ½·D1 term), so it is `dpm_pp_update`. The
corrector reuses the network evaluation the next step makes anyway: once x̃_i (the predictor's output) has been
evaluated, x_i is recomputed from x_{i−1} with the new data prediction as one more interpolation point, and the
walk continues from the corrected x_i. No extra network evaluations: NFE = steps. The rules are diffusers'
UniPCMultistepScheduler, checked against it in tests/test_solvers_diffusers.py.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .ddim import Denoiser
from .schedule import NoiseSchedule
from .solvers_dpm import Level, data_prediction, dpm_pp_update, level
from .solvers_plan import unipc_orders


def unic_update(last: torch.Tensor, x0_new: torch.Tensor, x0s: list[torch.Tensor], levels: list[Level],
                to: Level, order: int) -> torch.Tensor:
    """UniC-`order` (bh2): the corrected sample at level `to`, stepping again from `last` (the sample at
    levels[-1] that the previous predictor started from) with the data predictions `x0s` (at `levels`, newest
    last) plus `x0_new`, the prediction at the predictor's output (level `to`)."""
    now, m0 = levels[-1], x0s[-1]
    h = to.lam - now.lam
    phi = math.expm1(-h)  # h·φ1 with h → −h (data prediction); bh2 makes B(h) the same number
    out = (to.sigma / now.sigma) * last - (to.alpha * phi) * m0
    d1_t = x0_new - m0
    if order == 1:
        return out - (0.5 * to.alpha * phi) * d1_t  # diffusers' simplified ρ = ½ for UniC-1
    # order 2: ρ solves [[1, 1], [r, 1]]·ρ = b, with b_k from the φ-functions of −h divided by B(h)
    r = (levels[-2].lam - now.lam) / h
    hh = -h
    phi_1 = phi / hh - 1.0
    b1, b2 = phi_1 / phi, 2.0 * (phi_1 / hh - 0.5) / phi
    rho0 = (b1 - b2) / (1.0 - r)
    rho1 = b1 - rho0
    d1 = (x0s[-2] - m0) * (1.0 / r)
    return out - (to.alpha * phi) * (rho0 * d1 + rho1 * d1_t)


def unipc_sample(
    model: Denoiser,
    noise: torch.Tensor,
    pairs: list[tuple[int, int]],
    schedule: NoiseSchedule,
    kind: str = "eps",
    clip_x0: bool = False,
    callback: Callable[[dict], None] | None = None,
) -> torch.Tensor:
    """Walk the (t, s) pairs of a DDIM grid with UniPC (bh2, order 2), one network evaluation per pair. The
    history (two data predictions, the sample the last predictor started from, its order) lives in this loop."""
    x, x0s, levels, last, last_order = noise, [], [], noise, 0
    for i, ((t, s), k) in enumerate(zip(pairs, unipc_orders(len(pairs), 2))):
        here = level(schedule, t)
        x0 = data_prediction(model, x, t, schedule, kind, clip_x0)  # at the predictor's output x̃_i
        if i > 0:
            x = unic_update(last, x0, x0s, levels, here, last_order)
        x0s, levels = (x0s + [x0])[-2:], (levels + [here])[-2:]
        last, last_order = x, k
        x = dpm_pp_update(x, x0s, levels, level(schedule, s), k)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": x0})
    return x
