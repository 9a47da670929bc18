"""What a distillation method is to the runner: one small update object per method.

The runner only schedules stages and updates, applies the optimizer and EMA step and writes events; the
update object owns everything that makes its method what it is: which network is the teacher, what a stage
start does (fill the trajectory pool, or start a PD round), what an update costs in network evaluations and
how its loss is computed. It reaches the run's shared parts (model, EMA, pool, generator, the guided,
autocast and compiled student path) through `run`, the `Distiller` it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..dsd import PairResult
from ..stepping import Stage

if TYPE_CHECKING:
    from ..runner import Distiller


@dataclass
class UpdateBatch:
    """One update's loss, with what the runner records about its samples."""

    result: PairResult
    pairs: torch.Tensor  # each sample's pair index on the stage's grid (the event's loss_by_pair)
    timesteps: torch.Tensor  # each sample's student timestep (the step histogram)


class MethodUpdate:
    kind = ""  # what stage and loss events call the update ("dsd" or "pd")
    start_label = ""  # what starting a stage does, for a front end to name it

    def __init__(self, run: Distiller):
        self.run = run

    @property
    def nfe_per_sample(self) -> int:
        """Network evaluations per trajectory or image of one update."""
        raise NotImplementedError

    def evaluations(self, batch: UpdateBatch) -> int:
        """Network evaluations of one update on this process."""
        return self.nfe_per_sample * len(batch.pairs)

    def teacher(self) -> Callable:
        raise NotImplementedError

    def start_stage(self, stage: Stage) -> int:
        """Prepare a stage; returns the network evaluations spent on it (all processes)."""
        raise NotImplementedError

    def loss(self, stage: Stage) -> UpdateBatch:
        raise NotImplementedError

    def finish(self, batch: UpdateBatch) -> None:
        """After the optimizer step (or its skip)."""

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors this method adds to the resumable state."""
        return {}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """The inverse of `state`, given the whole state file's tensors."""
