"""DDIM timestep grids: which timesteps an N-step sampler visits. Plain numpy, so the terminal app and the
step-schedule rules can use them without importing torch."""

from __future__ import annotations

import numpy as np

from .errors import DsdError

SPACINGS = ("trailing", "leading")


def ddim_timesteps(num_steps: int, num_timesteps: int = 1000, spacing: str = "trailing") -> list[int]:
    """The N timesteps a DDIM sampler visits, from noisiest to cleanest; the walk ends at t = −1.

    trailing: t_i = round(T·(N−i)/N) − 1, so the first step starts at T−1 and halving N keeps a subset.
    leading:  t_i = (N−1−i)·(T // N), as diffusers' default (never starts at T−1).
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise DsdError(f"step count must be a positive integer, got {num_steps!r}")
    if num_steps > num_timesteps:
        raise DsdError(f"step count {num_steps} exceeds the schedule's {num_timesteps} timesteps")
    if spacing == "trailing":
        i = np.arange(num_steps)
        grid = np.round(num_timesteps * (num_steps - i) / num_steps).astype(np.int64) - 1
    elif spacing == "leading":
        grid = (np.arange(num_steps) * (num_timesteps // num_steps))[::-1].astype(np.int64)
    else:
        raise DsdError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    return [int(t) for t in grid]


def step_pairs(num_steps: int, num_timesteps: int = 1000, spacing: str = "trailing") -> list[tuple[int, int]]:
    """The (t, s) pairs of an N-step DDIM walk, the last one landing on s = −1 (clean data)."""
    grid = ddim_timesteps(num_steps, num_timesteps, spacing)
    return list(zip(grid, grid[1:] + [-1]))
