"""One entry point for every sampler dsd offers: DDIM (`ddim.py`), DPM-Solver++ 2M/3M (`solvers_dpm.py`) and
UniPC (`solvers_unipc.py`). All walk the same DDIM timestep grid (`timesteps.step_pairs`: trailing by default,
ending on clean data), take the same (x, t) → prediction denoiser (`guidance.bind` for classifier-free
guidance) and make one network evaluation per step, so a sampler changes the arithmetic between network calls
and nothing else.

Clipping: `clip_x0` clamps each step's x0 estimate to [−1, 1] for every sampler (dsd's default, as for DDIM).
diffusers' DPM-Solver++ and UniPC schedulers default to no thresholding; their parity tests run with it off.
"""

from __future__ import annotations

from typing import Callable

import torch

from .ddim import Denoiser, ddim_sample
from .schedule import NoiseSchedule
from .solvers_dpm import dpm_solver_pp_sample
from .solvers_plan import ORDER, SAMPLERS, check_sampler
from .solvers_unipc import unipc_sample

__all__ = ["SAMPLERS", "dpm_solver_pp_sample", "solver_sample", "unipc_sample"]


def solver_sample(
    sampler: str,
    model: Denoiser,
    noise: torch.Tensor,
    pairs: list[tuple[int, int]],
    schedule: NoiseSchedule,
    kind: str = "eps",
    clip_x0: bool = False,
    callback: Callable[[dict], None] | None = None,
) -> torch.Tensor:
    """Walk the (t, s) pairs from pure noise to data with the named sampler."""
    sampler = check_sampler(sampler)
    if sampler == "ddim":
        return ddim_sample(model, noise, pairs, schedule, kind, clip_x0, callback)
    if sampler == "unipc":
        return unipc_sample(model, noise, pairs, schedule, kind, clip_x0, callback)
    return dpm_solver_pp_sample(model, noise, pairs, schedule, kind, ORDER[sampler], clip_x0, callback=callback)
