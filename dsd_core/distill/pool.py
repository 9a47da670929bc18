"""A pool of in-flight sampling trajectories on one DDIM grid, each parked at the start of a pair.

Trajectory i sits at x_{t_2k_i}. Staggered (the default), trajectory i starts at pair i mod (N/2), so one
update mixes all noise levels; lockstep, all start at pair 0 together (the authors' batch-1 recipe, which
damages the model at batch > 1). A finished trajectory restarts from fresh noise. Starting mid-way costs a
warm-up: the model samples (without gradients) from noise to the starting pair; those evaluations are counted.

A class-conditional model's trajectories each carry a class id, drawn uniformly when they start. Under
data-parallel distillation every rank holds a shard (`rank`, `world`) of one global pool: all ranks draw the
same global noise and labels from identically seeded generators and keep their own rows, so K ranks of B
trajectories walk exactly the trajectories one process of K·B would.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..ddim import ddim_step
from ..schedule import NoiseSchedule
from ..timesteps import ddim_timesteps


def grid_pairs(grid: list[int], k: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(t_2k, t_2k+1, t_2k+2) of pairs k on a DDIM grid; index N (past the end) is clean data, t = −1."""
    padded = torch.tensor(grid + [-1], dtype=torch.long)
    k = k.cpu()
    return tuple(padded[2 * k + i].to(device) for i in range(3))


class TrajectoryPool:
    def __init__(self, size: int, shape: tuple[int, ...], gen: torch.Generator, device: torch.device, lockstep: bool,
                 num_classes: int | None = None, rank: int = 0, world: int = 1):
        self.size, self.shape, self.gen, self.device, self.lockstep = size, shape, gen, device, lockstep
        self.num_classes, self.rank, self.world = num_classes, rank, world
        self.grid: list[int] = []
        self.x = torch.empty(0)
        self.labels: torch.Tensor | None = None  # this shard's class ids (conditional models)
        self.k_global = torch.zeros(size * world, dtype=torch.long)

    @property
    def mine(self) -> slice:
        return slice(self.rank * self.size, (self.rank + 1) * self.size)

    @property
    def k(self) -> torch.Tensor:
        """The pair index of this shard's trajectories."""
        return self.k_global[self.mine]

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn((n, *self.shape), generator=self.gen).to(self.device)

    def fresh(self, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Noise (and labels) for the global rows `which`, drawn for all of them; this shard's part and mask."""
        n = int(which.sum())
        x = self.noise(n)
        y = torch.randint(0, self.num_classes, (n,), generator=self.gen) if self.num_classes else None
        rows = which.nonzero().squeeze(1)
        keep = (rows >= self.mine.start) & (rows < self.mine.stop)
        local = torch.zeros(self.size, dtype=torch.bool)
        local[rows[keep] - self.mine.start] = True
        return x[keep.to(self.device)], None if y is None else y[keep].to(self.device), local

    @property
    def pairs(self) -> int:
        return len(self.grid) // 2

    @torch.no_grad()
    def start_stage(self, steps: int, num_timesteps: int, denoise: Callable, schedule: NoiseSchedule,
                    prediction: str, clip_x0: bool) -> int:
        """Park every trajectory at its starting pair on the `steps` grid; returns the evaluations spent."""
        self.grid = ddim_timesteps(steps, num_timesteps)
        n = self.size * self.world
        self.k_global = torch.zeros(n, dtype=torch.long) if self.lockstep else torch.arange(n) % self.pairs
        start = self.k.clone()
        x, self.labels, _ = self.fresh(torch.ones(n, dtype=torch.bool))
        evals = 0
        for i in range(2 * int(start.max())):  # walk each trajectory to grid index 2·k
            active = (2 * start > i).nonzero().squeeze(1).to(self.device)
            xa = x[active]
            t = torch.full((len(active),), self.grid[i], device=self.device)
            s = torch.full_like(t, self.grid[i + 1])
            pred = denoise(xa, t) if self.labels is None else denoise(xa, t, self.labels[active])
            x[active] = ddim_step(pred, xa, t, s, schedule, prediction, clip_x0).prev_sample
            evals += len(active)
        self.x = x
        return evals

    def pair_timesteps(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(t_2k, t_2k+1, t_2k+2) of each trajectory's current pair: student step, teacher step, landing."""
        return grid_pairs(self.grid, self.k, self.device)

    @staticmethod
    def non_finite(x_next: torch.Tensor) -> torch.Tensor:
        """A CPU mask of the trajectories whose next sample holds a NaN or an Inf."""
        return ~torch.isfinite(x_next.flatten(1)).all(1).cpu()

    def continue_from(self, x_next: torch.Tensor, restart: torch.Tensor) -> None:
        """Advance to `x_next` (non-finite values zeroed), then send the `restart` trajectories to fresh noise."""
        self.advance(torch.where(torch.isfinite(x_next), x_next, torch.zeros_like(x_next)))
        self.restart(restart)

    def advance(self, x_next: torch.Tensor) -> None:
        """Move every trajectory to its next pair; restart finished ones from fresh noise."""
        self.k_global += 1
        self.x = x_next.detach()
        self.restart(self.k_global >= self.pairs)

    def restart(self, which: torch.Tensor) -> None:
        """Send the given trajectories (a mask over the global pool) back to fresh noise, e.g. after a
        non-finite value."""
        which = which.cpu()
        if bool(which.any()):
            x, y, local = self.fresh(which)
            self.x = self.x.clone()
            self.x[local.to(self.device)] = x
            if y is not None:
                self.labels = self.labels.clone()
                self.labels[local.to(self.device)] = y
            self.k_global[which] = 0

    def state(self) -> dict[str, torch.Tensor]:
        """This shard's state (the runner gathers the shards of a data-parallel run into the global pool)."""
        state = {"x": self.x, "k": self.k, "grid": torch.tensor(self.grid, dtype=torch.long)}
        if self.labels is not None:
            state["labels"] = self.labels
        return state

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load a global pool state (one process's, or gathered shards) and keep this shard."""
        self.k_global = tensors["k"].clone()
        self.x = tensors["x"][self.mine].to(self.device)
        self.labels = tensors["labels"][self.mine].to(self.device) if "labels" in tensors else None
        self.grid = tensors["grid"].tolist()
