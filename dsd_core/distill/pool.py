"""A pool of in-flight sampling trajectories on one DDIM grid, each parked at the start of a pair.

Trajectory i sits at x_{t_2k_i}. Staggered (the default), trajectory i starts at pair i mod (N/2), so one
update mixes all noise levels; lockstep, all start at pair 0 together (the authors' batch-1 recipe, which
damages the model at batch > 1). A finished trajectory restarts from fresh noise. Starting mid-way costs a
warm-up: the model samples (without gradients) from noise to the starting pair; those evaluations are counted.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..ddim import ddim_step
from ..schedule import NoiseSchedule, ddim_timesteps


class TrajectoryPool:
    def __init__(self, size: int, shape: tuple[int, ...], gen: torch.Generator, device: torch.device, lockstep: bool):
        self.size, self.shape, self.gen, self.device, self.lockstep = size, shape, gen, device, lockstep
        self.grid: list[int] = []
        self.x = torch.empty(0)
        self.k = torch.zeros(size, dtype=torch.long)

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn((n, *self.shape), generator=self.gen).to(self.device)

    @property
    def pairs(self) -> int:
        return len(self.grid) // 2

    def timesteps(self, index: torch.Tensor) -> torch.Tensor:
        """Timesteps at grid indices; index N (past the end) is clean data, t = −1."""
        padded = torch.tensor(self.grid + [-1], dtype=torch.long)
        return padded[index.cpu()].to(self.device)

    @torch.no_grad()
    def start_stage(self, steps: int, num_timesteps: int, denoise: Callable, schedule: NoiseSchedule,
                    prediction: str, clip_x0: bool) -> int:
        """Park every trajectory at its starting pair on the `steps` grid; returns the evaluations spent."""
        self.grid = ddim_timesteps(steps, num_timesteps)
        start = torch.zeros(self.size, dtype=torch.long) if self.lockstep else torch.arange(self.size) % self.pairs
        self.k = start.clone()
        x, evals = self.noise(self.size), 0
        for i in range(2 * int(start.max())):  # walk each trajectory to grid index 2·k
            active = (2 * start > i).nonzero().squeeze(1).to(self.device)
            xa = x[active]
            t = torch.full((len(active),), self.grid[i], device=self.device)
            s = torch.full_like(t, self.grid[i + 1])
            x[active] = ddim_step(denoise(xa, t), xa, t, s, schedule, prediction, clip_x0).prev_sample
            evals += len(active)
        self.x = x
        return evals

    def advance(self, x_next: torch.Tensor) -> None:
        """Move every trajectory to its next pair; restart finished ones from fresh noise."""
        self.k += 1
        done = self.k >= self.pairs
        self.x = x_next.detach()
        if bool(done.any()):
            self.x = self.x.clone()
            self.x[done.to(self.device)] = self.noise(int(done.sum()))
            self.k[done] = 0

    def restart(self, which: torch.Tensor) -> None:
        """Send the given trajectories back to fresh noise (after a non-finite value)."""
        if bool(which.any()):
            self.x = self.x.clone()
            self.x[which.to(self.device)] = self.noise(int(which.sum()))
            self.k[which.cpu()] = 0

    def state(self) -> dict[str, torch.Tensor]:
        return {"x": self.x, "k": self.k, "grid": torch.tensor(self.grid, dtype=torch.long)}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        self.x, self.k = tensors["x"].to(self.device), tensors["k"].clone()
        self.grid = tensors["grid"].tolist()
