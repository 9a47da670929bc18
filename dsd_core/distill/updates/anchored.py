"""Anchored DSD: the DSD update on the model's own trajectories, plus a share of samples that fit the starting
model's cached fine-grid trajectories (distill/anchor.py), so that more updates cannot carry the student away
from the starting model's map. About 2 network evaluations per trajectory and update (2 for the DSD pair, 1 per
anchored sample), no teacher copy, no data."""

from __future__ import annotations

import dataclasses

import torch

from ..anchor import TrajectoryCache, anchor_loss
from ..stepping import Stage
from .base import UpdateBatch
from .dsd import DsdUpdate


class AnchoredDsdUpdate(DsdUpdate):
    def __init__(self, run):
        """The cache is drawn here, when the run is made: before its first update, and on resume before the
        state is loaded, so it always holds the starting weights' trajectories (the same noises each time)."""
        super().__init__(run)
        c = run.model.config
        self.cache = TrajectoryCache(run.guided(run.ema.shadow), run.cfg.anchor_cache,
                                     (c.in_channels, c.image_size, c.image_size), run.cfg.n_from, run.schedule,
                                     run.prediction, run.cfg.clip_x0, run.device, run.num_classes)

    @property
    def anchored(self) -> int:
        """Anchored samples per update and process."""
        return max(1, round(self.run.cfg.anchor_share * self.run.cfg.batch))

    def evaluations(self, batch: UpdateBatch) -> int:
        """The DSD pair's evaluations plus one (guided: two) per anchored sample."""
        return super().evaluations(batch) + self.run.guided_cost * self.anchored

    def start_stage(self, stage: Stage) -> int:
        """The DSD pool's warm-up; the first stage also counts the cache's evaluations."""
        r = self.run
        first = stage is r.stages[0]
        return (r.guided_cost * self.cache.evaluations * r.world.size if first else 0) + super().start_stage(stage)

    def loss(self, stage: Stage) -> UpdateBatch:
        batch = super().loss(stage)
        r, m = self.run, self.anchored
        k = torch.randint(0, stage.steps // 2, (m,), generator=r.gen)
        idx = torch.randint(0, r.cfg.anchor_cache, (m,), generator=r.gen)
        x_t, x_s, t, s, labels = self.cache.pairs(r.pool.grid, k, idx)
        student = r.guided(r.student)
        anchor, _ = anchor_loss(lambda x, tt: student(x, tt, labels), x_t, x_s, t, s, r.schedule, r.prediction,
                                r.cfg.weight)
        n = len(batch.pairs)
        loss = (n * batch.result.loss + m * anchor) / (n + m)  # every sample counts once
        return dataclasses.replace(batch, result=dataclasses.replace(batch.result, loss=loss))
