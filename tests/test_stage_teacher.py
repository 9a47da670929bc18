"""DSD with a per-stage frozen teacher (`--method dsd-stage`): its first update is exactly DSD's (the frozen
copy is the EMA it starts from), the teacher stays put while the EMA moves, each stage refreshes it from the
model the stage starts from, and a run resumed mid-stage ends bit-identical."""

import torch

from dsd_core.checkpoint import load_model
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.runner import Distiller

from .conftest import assert_resume_is_bit_identical

CPU = torch.device("cpu")


def _distiller(tiny_ckpt, run_dir, **kw):
    cfg = DistillConfig(**{**dict(method="dsd-stage", schedule="iterative", n_from=16, n_to=4, updates=8, batch=6,
                                  lr=1e-4, sample_every=100, checkpoint_every=3, quality_every=0), **kw})
    return Distiller(load_model(tiny_ckpt), cfg, run_dir, CPU, "tiny", "sha")


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_the_first_update_is_dsds_and_the_stage_teacher_stays_frozen(tiny_ckpt, tmp_path):
    first = {}
    for method in ("dsd", "dsd-stage"):
        d = _distiller(tiny_ckpt, tmp_path / method, method=method, updates=2)
        d.start_stage(0)
        first[method] = float(d.step()["loss"])
    assert first["dsd-stage"] == first["dsd"]  # the same loss: teacher = the EMA = the starting model

    d = _distiller(tiny_ckpt, tmp_path / "run")
    seen = {}

    def watch(update, event):
        seen[update] = (_state(d.updates["dsd-stage"].stage_teacher), _state(d.ema.shadow))

    start = _state(d.model)
    d.run_loop(watch)
    teacher_1, ema_1 = seen[1]
    teacher_4, ema_4 = seen[4]  # the last update of stage one (updates 1–4)
    assert _equal(teacher_1, start) and _equal(teacher_4, start)  # frozen for the whole stage
    assert not _equal(ema_4, start)  # while the EMA moved
    teacher_5, _ = seen[5]  # stage two's teacher: the EMA stage one ended with
    assert _equal(teacher_5, ema_4)
    assert d.nfe["updates"] == 2 * 6 * 8  # DSD's cost: 2 NFE per trajectory and update (to 4 steps: no teacher first)


def test_resume_mid_stage_is_bit_identical(tiny_ckpt, tmp_path):
    # killed at update 7: the last checkpoint is at update 6, inside stage two, whose teacher comes back from it
    assert_resume_is_bit_identical(lambda run_dir: _distiller(tiny_ckpt, run_dir), tmp_path, kill_at=7)
