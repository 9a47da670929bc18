"""Anchored DSD (distill/anchor.py, updates/anchored.py): the anchor loss on a case with a known answer, the
cache's nesting of grids, the NFE count, and a resume that ends bit-identical (the cache is redrawn from the
starting weights)."""

from __future__ import annotations

import torch

from dsd_core.checkpoint import load_model
from dsd_core.ddim import ddim_step
from dsd_core.distill.anchor import TrajectoryCache, anchor_loss
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.runner import Distiller
from dsd_core.schedule import NoiseSchedule
from dsd_core.timesteps import ddim_timesteps

from .conftest import assert_resume_is_bit_identical

CPU = torch.device("cpu")
S = NoiseSchedule("linear")


def test_the_anchor_loss_is_zero_where_the_students_own_step_lands(tiny_model):
    x_t, t, s = torch.randn(5, 1, 8, 8), torch.tensor([999, 874, 624, 249, 124]), torch.tensor([749, 624, 374, -1, -1])
    with torch.no_grad():
        landed = ddim_step(tiny_model(x_t, t), x_t, t, s, S, "eps").prev_sample
        loss, per_sample = anchor_loss(tiny_model, x_t, landed, t, s, S, "eps")
    assert float(loss) < 1e-8 and per_sample.shape == (5,)
    with torch.no_grad():
        off, _ = anchor_loss(tiny_model, x_t, landed + 0.1, t, s, S, "eps", weight="constant")
    assert float(off) > 1e-4


def test_the_cache_walks_the_finest_grid_and_serves_coarser_ones(tiny_model):
    def denoise(x, t, labels=None):
        return tiny_model(x, t)

    cache = TrajectoryCache(denoise, 6, (1, 8, 8), 8, S, "eps", True, CPU)
    assert cache.states.shape == (9, 6, 1, 8, 8) and cache.grid == ddim_timesteps(8) + [-1]
    stage_grid = ddim_timesteps(4)  # a subset of the 8-step grid
    x_t, x_s, t, s, labels = cache.pairs(stage_grid, torch.tensor([0, 1]), torch.tensor([3, 5]))
    assert t.tolist() == [stage_grid[0], stage_grid[2]] and s.tolist() == [stage_grid[2], -1] and labels is None
    assert torch.equal(x_t[0], cache.states[0, 3]) and torch.equal(x_s[1], cache.states[8, 5])


def _anchored(tiny_ckpt, run_dir, **kw):
    cfg = DistillConfig(**{**dict(method="dsd-anchor", schedule="iterative", n_from=16, n_to=4, updates=8, batch=6,
                                  lr=1e-4, sample_every=100, checkpoint_every=3, anchor_cache=10, quality_every=0),
                           **kw})
    return Distiller(load_model(tiny_ckpt), cfg, run_dir, CPU, "tiny", "sha")


def test_an_anchored_run_counts_its_evaluations(tiny_ckpt, tmp_path):
    d = _anchored(tiny_ckpt, tmp_path)
    d.run_loop()
    anchored = round(0.25 * 6)
    assert d.nfe["updates"] == 8 * (2 * 6 + anchored)
    assert d.nfe["warmup"] >= 10 * 16  # the cache: 10 trajectories on the 16-step grid


def test_an_anchored_run_resumes_bit_identical(tiny_ckpt, tmp_path):
    assert_resume_is_bit_identical(lambda run_dir: _anchored(tiny_ckpt, run_dir), tmp_path, kill_at=7)
