"""Step schedulers: which DDIM grids a distillation trains on, and how its update budget is split.

A stage with step count N trains the pairs (t_2k → t_2k+1) of the N-step trailing grid, so that one step
t_2k → t_2k+2 of the N/2-step grid does what two steps did: after it, the model samples well with N/2 steps.

- naive (DSDN): one stage, N = 2·to: the target is distilled directly (`--from` is not used).
- iterative (DSDI): N = from, from/2, …, 2·to; the budget split evenly; `from` must be to·2^j.
- gradual-linear: N = from, from−2, …, 2·to; the budget split evenly.
- gradual-exp: the same stages, the budget decaying by half every quarter of the stages (the first stage
  gets 16× the last): more updates where the grid is fine.

The step-frequency histogram counts the updates that distilled each student timestep, exactly, and maps
them onto the step indices of the finest grid for display.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OptionError
from ..timesteps import ddim_timesteps

SCHEDULES = ("naive", "iterative", "gradual-linear", "gradual-exp")


class StepsError(OptionError):
    """Step counts that do not fit a schedule; `field` names the config field to fix (see `OptionError`)."""


@dataclass(frozen=True)
class Stage:
    steps: int  # N: the grid whose pairs are trained; the model then samples with N // 2 steps
    updates: int

    @property
    def target_steps(self) -> int:
        return self.steps // 2


def split_budget(total: int, weights: list[float]) -> list[int]:
    """Integer shares of `total` proportional to `weights` (largest remainder), summing exactly to total."""
    w = np.asarray(weights, dtype=np.float64)
    raw = total * w / w.sum()
    shares = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - shares), kind="stable")[: total - shares.sum()]:
        shares[i] += 1
    return shares.tolist()


def build_stages(schedule: str, n_from: int, n_to: int, updates: int, num_timesteps: int = 1000) -> list[Stage]:
    """The stages of a distillation from `n_from` sampling steps' quality down to `n_to` sampling steps."""
    if schedule not in SCHEDULES:
        raise StepsError("unknown step schedule {value!r}; choose one of {names}", "schedule", value=schedule,
                         names=", ".join(SCHEDULES))
    if n_to < 1:
        raise StepsError("{n_to} must be at least 1 step, got {n}", n=n_to)
    if updates < 1:
        raise StepsError("{updates} must be at least 1, got {n}", n=updates)
    if schedule != "naive" and n_from < 2 * n_to:
        raise StepsError("{n_from} {a} must be at least twice {n_to} {b}", "n_to", a=n_from, b=n_to)
    if 2 * max(n_from, n_to) > 2 * num_timesteps or n_from > num_timesteps:
        raise StepsError("{n_from} {n} exceeds the schedule's {t} timesteps", n=n_from, t=num_timesteps)
    if schedule == "naive":
        counts = [2 * n_to]
    elif schedule == "iterative":
        ratio = n_from // n_to
        if n_from % n_to or ratio & (ratio - 1):
            raise StepsError("iterative halving needs {n_from} = {n_to} × 2^k; {a} is not a power-of-two multiple "
                             "of {b}", "n_from", a=n_from, b=n_to)
        counts = [n_from // 2**i for i in range(ratio.bit_length() - 1)]
    else:
        if n_from % 2:
            raise StepsError("gradual schedules step down by 2 and need an even {n_from}, got {n}", n=n_from)
        counts = list(range(n_from, 2 * n_to - 1, -2))
    if schedule == "gradual-exp":
        half_life = max(1.0, len(counts) / 4)
        weights = [0.5 ** (i / half_life) for i in range(len(counts))]
    else:
        weights = [1.0] * len(counts)
    shares = split_budget(updates, weights)
    if min(shares) < 1:
        raise StepsError("{n} updates cannot cover {k} stages; give at least {k}", "updates", n=updates,
                         k=len(counts))
    return [Stage(n, u) for n, u in zip(counts, shares)]


class StepHistogram:
    """Updates per student timestep (exact), shown per step index of the finest grid."""

    def __init__(self, finest_steps: int, num_timesteps: int = 1000):
        self.finest = ddim_timesteps(finest_steps, num_timesteps)
        self.counts: dict[int, int] = {}

    def add(self, timesteps: list[int]) -> None:
        for t in timesteps:
            self.counts[t] = self.counts.get(t, 0) + 1

    def per_finest_index(self) -> list[int]:
        """Counts on the finest grid's step indices (a timestep off that grid goes to the nearest index)."""
        grid = np.asarray(self.finest)
        out = [0] * len(grid)
        for t, c in self.counts.items():
            out[int(np.abs(grid - t).argmin())] += c
        return out

    def to_dict(self) -> dict:
        return {"finest_grid": self.finest, "per_index": self.per_finest_index(),
                "per_timestep": {str(t): c for t, c in sorted(self.counts.items(), reverse=True)}}

    def load(self, d: dict) -> None:
        self.counts = {int(t): int(c) for t, c in d["per_timestep"].items()}
