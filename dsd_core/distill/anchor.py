"""The anchor of anchored DSD: the starting model's own fine-grid trajectories, cached once, that a share of
every update fits, so the student cannot drift off the starting model's noise → image map.

DSD's target is the EMA teacher's step from the student's own step: any self-consistent model is a fixed point,
and the run can wander among them (docs/benchmarks.md, "Twice the budget"). TSD pins the teacher to a frozen
copy of the starting model, at the memory of a second model. The cache pins the *trajectories* instead: for
`size` fixed noises, the starting model's DDIM states at every point of the finest grid (trailing grids nest,
so every coarser stage grid is a subset). For a pair t → s of a stage, the student's single step from the
cached state at t must land on the cached state at s: progressive distillation's target (`ddim.x0_reaching`)
with the starting model's fine trajectory as the teacher. One student evaluation per anchored sample, no
teacher evaluation; memory: `size × (finest steps + 1)` images.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..ddim import ddim_step, pred_to_x0_eps, x0_reaching
from ..noise import initial_noise
from ..schedule import NoiseSchedule
from ..timesteps import ddim_timesteps
from .dsd import weighted_x0_error
from .pool import grid_pairs

CACHE_SEED = 2**31 - 2  # the cache's noises: not the run's generator, and not the agreement check's


def anchor_loss(student: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x_t: torch.Tensor,
                x_s: torch.Tensor, t: torch.Tensor, s: torch.Tensor, schedule: NoiseSchedule, prediction: str,
                weight: str = "authors") -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, per-sample) weighted squared error between the student's x0̂ at (x_t, t) and the x0̂ whose single
    DDIM step t → s lands on x_s; zero when the student's own step lands there."""
    x0_s, _ = pred_to_x0_eps(student(x_t, t), x_t, t, schedule, prediction)
    target = x0_reaching(x_t, x_s, t, s, schedule)
    per_sample = weighted_x0_error(x0_s, target, t, schedule, weight)
    return per_sample.mean(), per_sample.detach()


class TrajectoryCache:
    """`states[i]` is the batch of trajectories at the i-th point of the finest grid (`grid[i]`; the last entry
    is the clean end, t = −1); `labels` the class each trajectory was drawn for (conditional models)."""

    def __init__(self, denoise: Callable, size: int, shape: tuple[int, ...], finest_steps: int,
                 schedule: NoiseSchedule, prediction: str, clip_x0: bool, device: torch.device,
                 num_classes: int | None = None):
        self.grid = ddim_timesteps(finest_steps, schedule.num_timesteps) + [-1]
        self.labels = None if num_classes is None else (torch.arange(size) % num_classes).to(device)
        x = torch.from_numpy(initial_noise(CACHE_SEED, size, shape)).to(device)
        states = [x]
        with torch.no_grad():
            for t, s in zip(self.grid[:-1], self.grid[1:]):
                tt, ss = torch.full((size,), t, device=device), torch.full((size,), s, device=device)
                x = ddim_step(denoise(x, tt, self.labels), x, tt, ss, schedule, prediction, clip_x0).prev_sample
                states.append(x)
        self.states = torch.stack(states)
        self.evaluations = size * finest_steps

    def pairs(self, stage_grid: list[int], k: torch.Tensor, idx: torch.Tensor):
        """(x_t, x_s, t, s, labels) for trajectories `idx` at pairs `k` of a stage grid (t = grid[2k],
        s = grid[2k+2], or −1 past its end)."""
        t, _, s = grid_pairs(stage_grid, k, self.states.device)
        row_t = torch.tensor([self.grid.index(v) for v in t.tolist()], device=self.states.device)
        row_s = torch.tensor([self.grid.index(v) for v in s.tolist()], device=self.states.device)
        idx = idx.to(self.states.device)
        labels = None if self.labels is None else self.labels[idx]
        return self.states[row_t, idx], self.states[row_s, idx], t, s, labels
