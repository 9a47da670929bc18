"""DSD with a per-stage frozen teacher: the DSD update (the model's own trajectories, 2 NFE), but the teacher
step is taken by a copy of the model frozen at the start of each stage, as in a PD round, instead of the
moving EMA. The target of a stage then does not move with the student, which removes the feedback through
which self-distillation drifts; the price is one weight copy, as TSD and PD hold."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ...checkpoint import prefixed, unprefixed
from ..stepping import Stage
from .dsd import DsdUpdate

PREFIX = "stage_teacher"


class StageTeacherUpdate(DsdUpdate):
    def __init__(self, run):
        super().__init__(run)
        self.stage_teacher: torch.nn.Module | None = None

    def teacher(self) -> Callable:
        return self.stage_teacher

    def freeze(self, state: dict[str, torch.Tensor]) -> None:
        if self.stage_teacher is None:
            self.stage_teacher = copy.deepcopy(self.run.model).eval().requires_grad_(False)
        self.stage_teacher.load_state_dict(state)

    def start_stage(self, stage: Stage) -> int:
        """The stage's teacher is the EMA model the stage starts from (after a restore, the previous stage's
        best); then the pool is parked on the grid as in DSD, by that teacher."""
        self.freeze(self.run.ema.shadow.state_dict())
        return super().start_stage(stage)

    def state(self) -> dict[str, torch.Tensor]:
        return {} if self.stage_teacher is None else prefixed(PREFIX, self.stage_teacher.state_dict())

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        teacher = unprefixed(PREFIX, tensors)
        if teacher:
            self.freeze(teacher)
