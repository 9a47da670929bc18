"""PD: each stage is a round whose frozen teacher is the previous round's result (the EMA weights); the
student continues from them with a fresh optimizer at `pd_lr` and learns two teacher steps in one, on data."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ...checkpoint import prefixed, unprefixed
from ...timesteps import ddim_timesteps
from ..methods import NFE_PER_SAMPLE
from ..pd import pd_loss
from ..pool import grid_pairs
from ..stepping import Stage
from .base import MethodUpdate, UpdateBatch


class PdUpdate(MethodUpdate):
    kind = "pd"
    start_label = "starting a PD round"

    def __init__(self, run):
        super().__init__(run)
        self.round_teacher: torch.nn.Module | None = None

    @property
    def nfe_per_sample(self) -> int:
        return NFE_PER_SAMPLE["pd"]

    def teacher(self) -> Callable:
        return self.round_teacher

    def start_stage(self, stage: Stage) -> int:
        r = self.run
        r.model.load_state_dict(r.ema.shadow.state_dict())
        self.round_teacher = copy.deepcopy(r.ema.shadow).eval().requires_grad_(False)
        r.reset_optimizer(r.cfg.pd_lr)
        return 0  # only weights are copied

    def loss(self, stage: Stage) -> UpdateBatch:
        """Training images noised to random student timesteps of the round's grid."""
        r, b = self.run, self.run.cfg.batch
        k = torch.randint(0, stage.steps // 2, (b,), generator=r.gen)
        idx = torch.randint(0, r.data.shape[0], (b,), generator=r.gen)
        eps = torch.randn((b, *r.data.shape[1:]), generator=r.gen)
        t, t_mid, t_next = grid_pairs(ddim_timesteps(stage.steps, r.schedule.num_timesteps), k, r.device)
        res = pd_loss(r.guided(r.student), r.guided(self.round_teacher), r.data[idx].to(r.device),
                      eps.to(r.device), t, t_mid, t_next, r.schedule, r.prediction, r.cfg.clip_x0)
        return UpdateBatch(res, k, t)

    def state(self) -> dict[str, torch.Tensor]:
        return {} if self.round_teacher is None else prefixed("teacher", self.round_teacher.state_dict())

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        teacher = unprefixed("teacher", tensors)
        if teacher:
            self.round_teacher = copy.deepcopy(self.run.model).eval().requires_grad_(False)
            self.round_teacher.load_state_dict(teacher)
