"""DSD: the model's own trajectories (the staggered pool) teach it; the teacher is the EMA or the live model."""

from __future__ import annotations

from collections.abc import Callable

from ... import distributed as ddp
from ..dsd import dsd_pair_loss, in_chunks
from ..methods import NFE_PER_SAMPLE
from ..stepping import Stage
from .base import MethodUpdate, UpdateBatch


class DsdUpdate(MethodUpdate):
    kind = "dsd"
    start_label = "filling the trajectory pool"

    @property
    def nfe_per_sample(self) -> int:
        r = self.run
        return (NFE_PER_SAMPLE["dsd"] + r.cfg.teacher_first_in(r.stages[max(r.pool_stage, 0)])) * r.guided_cost

    def teacher(self) -> Callable:
        return self.run.ema.shadow if self.run.cfg.ema_teacher else self.run.model

    def start_stage(self, stage: Stage) -> int:
        """Park the trajectory pool on the stage's grid: the warm-up samples each trajectory up to its first
        pair (no loss exists yet)."""
        r = self.run
        evals = r.pool.start_stage(stage.steps, r.schedule.num_timesteps, r.guided(self.teacher()), r.schedule,
                                   r.prediction, r.cfg.clip_x0)
        return r.guided_cost * evals * r.world.size

    def loss(self, stage: Stage) -> UpdateBatch:
        r, pool = self.run, self.run.pool
        k = pool.k
        t, t_mid, t_next = pool.pair_timesteps()
        student, labels = r.guided(r.student), pool.labels
        teacher = in_chunks(r.guided(self.teacher()), r.cfg.teacher_chunks)
        res = dsd_pair_loss(lambda x, t: student(x, t, labels), lambda x, t: teacher(x, t, labels), pool.x, t,
                            t_mid, t_next, r.schedule, r.prediction, r.cfg.weight, r.cfg.clip_x0,
                            r.cfg.teacher_first_in(stage))
        return UpdateBatch(res, k, t)

    def finish(self, batch: UpdateBatch) -> None:
        """Trajectories continue where the teacher's step landed; non-finite ones restart on every rank."""
        pool = self.run.pool
        x_next = batch.result.x_next
        pool.continue_from(x_next, ddp.any_true(pool.non_finite(x_next), self.run.world))
