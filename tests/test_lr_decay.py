"""`--lr-decay cosine`: each stage's learning rate falls from the method's rate towards zero by the cosine
0.5·(1 + cos(π·i/n)) of the update's place i in the stage of n updates, restarts at the next stage (PD stages
from `pd_lr`), is what the optimizer uses and the loss events record, and resumes bit-identically."""

import math

import pytest
import torch

from dsd_core.checkpoint import load_model
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.runner import Distiller
from dsd_core.errors import OptionError

from .conftest import assert_resume_is_bit_identical

CPU = torch.device("cpu")


def _distiller(tiny_ckpt, run_dir, **kw):
    cfg = DistillConfig(**{**dict(method="dsd-stage", schedule="iterative", n_from=16, n_to=4, updates=8, batch=6,
                                  lr=1e-4, lr_decay="cosine", sample_every=100, checkpoint_every=3,
                                  quality_every=0), **kw})
    return Distiller(load_model(tiny_ckpt), cfg, run_dir, CPU, "tiny", "sha")


def test_each_stage_decays_from_the_rate_by_the_cosine(tiny_ckpt, tmp_path):
    d = _distiller(tiny_ckpt, tmp_path / "run")
    seen = {}

    def watch(update, event):
        seen[update] = (event["lr"], d.opt.param_groups[0]["lr"])

    d.run_loop(watch)
    expected = [1e-4 * 0.5 * (1 + math.cos(math.pi * i / 4)) for i in range(4)] * 2  # two stages of 4 updates
    assert [seen[u][0] for u in range(1, 9)] == pytest.approx(expected, rel=1e-12)
    assert all(event_lr == used for event_lr, used in seen.values())


def test_constant_keeps_the_rate_and_pd_stages_decay_from_pd_lr(tiny_ckpt, tmp_path):
    d = _distiller(tiny_ckpt, tmp_path / "c", lr_decay="constant")
    lrs = []
    d.run_loop(lambda update, event: lrs.append(event["lr"]))
    assert lrs == [1e-4] * 8

    d = _distiller(tiny_ckpt, tmp_path / "pd", pd_lr=2e-4)
    d.methods = ["dsd", "pd"]  # a dsd+pd plan, without PD's data
    d.pool_stage, d.update = 1, 4  # the first update of the PD stage (stage two)
    assert d.stage_lr() == pytest.approx(2e-4)
    d.update = 6
    assert d.stage_lr() == pytest.approx(2e-4 * 0.5 * (1 + math.cos(math.pi / 2)))


def test_unknown_decay_is_refused():
    with pytest.raises(OptionError, match="unknown choice .linear.; choose one of constant, cosine"):
        DistillConfig(lr_decay="linear")


def test_resume_mid_stage_is_bit_identical(tiny_ckpt, tmp_path):
    assert_resume_is_bit_identical(lambda run_dir: _distiller(tiny_ckpt, run_dir), tmp_path, kill_at=7)
