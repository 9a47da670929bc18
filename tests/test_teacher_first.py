"""`--teacher-first`: the teacher takes the first half-step of a DSD pair as well, so the midpoint (and with it
the target) is fixed by x_t alone. Checked on a closed form, on the run's first update (teacher = student: the
same loss as DSD's), and for its cost: 3 network evaluations per trajectory and update."""

import json

import pytest
import torch

from dsd_core.checkpoint import load_model
from dsd_core.ddim import ddim_step
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.dsd import dsd_pair_loss, loss_weight
from dsd_core.distill.methods import nfe_text
from dsd_core.distill.runner import Distiller
from dsd_core.errors import DsdError, OptionError
from dsd_core.schedule import NoiseSchedule

CPU = torch.device("cpu")


def test_the_midpoint_is_the_teachers_step_and_the_target_its_x0_there():
    schedule = NoiseSchedule("linear")
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    t, t_mid, t_next = (torch.full((3,), v) for v in (700, 500, 300))
    student = lambda x, t: torch.zeros_like(x)  # noqa: E731  (x0 predictions)
    teacher = lambda x, t: 0.1 * x  # noqa: E731
    res = dsd_pair_loss(student, teacher, x, t, t_mid, t_next, schedule, "x0", "constant", False, teacher_first=True)
    x_mid = ddim_step(0.1 * x, x, t, t_mid, schedule, "x0", False).prev_sample  # the teacher's own step
    target = 0.1 * x_mid
    assert torch.allclose(res.per_sample, target.pow(2).flatten(1).mean(1).float(), rtol=1e-6)
    landing = ddim_step(target, x_mid, t_mid, t_next, schedule, "x0", False).prev_sample
    assert torch.allclose(res.x_next, landing)
    student_first = dsd_pair_loss(student, teacher, x, t, t_mid, t_next, schedule, "x0", "constant", False)
    assert not torch.allclose(student_first.per_sample, res.per_sample)  # there the midpoint is the student's
    assert torch.equal(loss_weight("constant", t, schedule), torch.ones(3, dtype=torch.float64))


def _distiller(tiny_ckpt, run_dir, **kw):
    cfg = DistillConfig(**{**dict(method="dsd-stage", schedule="iterative", n_from=16, n_to=4, updates=4, batch=6,
                                  lr=1e-4, sample_every=100, checkpoint_every=100, quality_every=0), **kw})
    return Distiller(load_model(tiny_ckpt), cfg, run_dir, CPU, "tiny", "sha")


def test_the_first_update_equals_dsds_and_costs_three_evaluations(tiny_ckpt, tmp_path):
    losses = {}
    for first in ("off", "all"):
        d = _distiller(tiny_ckpt, tmp_path / first, teacher_first=first, updates=2)
        d.start_stage(0)
        losses[first] = float(d.step()["loss"])
    assert losses["all"] == losses["off"]  # the stage teacher is the student at the start: the same midpoint

    d = _distiller(tiny_ckpt, tmp_path / "run", teacher_first="all")
    d.run_loop()
    assert d.nfe["updates"] == 3 * 6 * 4
    said = nfe_text("dsd-stage", d.methods, 1, "all")
    assert said == "DSD (stage teacher), teacher first 3 NFE per trajectory and update"


def test_last_takes_the_teachers_first_step_only_in_the_last_stage(tiny_ckpt, tmp_path):
    """16 → 4 iteratively is two stages of two updates: 2 NFE per trajectory in the first, 3 in the last."""
    d = _distiller(tiny_ckpt, tmp_path / "run", teacher_first="last")
    assert [d.cfg.teacher_first_in(s) for s in d.stages] == [False, True]
    d.run_loop()
    stages = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert [e["teacher_first"] for e in stages if e["event"] == "stage"] == [False, True]  # the log says which
    assert d.nfe["updates"] == 2 * 6 * 2 + 3 * 6 * 2
    assert nfe_text("dsd-stage", d.methods, 2, "last") == (
        "DSD (stage teacher) 4 NFE per trajectory and update with guidance (6 in the last stage, teacher first)")


def test_a_run_saved_with_the_flag_reads_as_all_or_off_and_a_wrong_choice_names_them():
    assert DistillConfig(teacher_first=True).teacher_first == "all"
    assert DistillConfig(teacher_first=False).teacher_first == "off"
    with pytest.raises(OptionError, match="off, last, all"):
        DistillConfig(teacher_first="first")


def test_a_run_config_file_with_the_old_flag_still_resumes():
    from dsd_core.checks import config_from_file
    assert config_from_file(DistillConfig, {"teacher_first": False}, "config.json", "distill").teacher_first == "off"
    # a run written before the option ran student-first: resumed, it goes on so, though auto would turn it on
    older = config_from_file(DistillConfig, {"method": "dsd-stage", "n_to": 2}, "config.json", "distill")
    assert older.first_rule == "off" and DistillConfig(method="dsd-stage", n_to=2).first_rule == "last"
    with pytest.raises(DsdError, match="distill.teacher_first"):
        config_from_file(DistillConfig, {"teacher_first": 3}, "config.json", "distill")


def test_auto_is_the_last_stage_for_dsd_stage_to_two_steps_and_off_otherwise():
    assert DistillConfig(method="dsd-stage", n_to=2).first_rule == "last"
    assert DistillConfig(method="dsd-stage", n_to=1, n_from=8).first_rule == "last"
    assert DistillConfig(method="dsd-stage", n_to=4).first_rule == "off"
    assert DistillConfig(method="dsd-stage").first_rule == "off"  # the default job distils to 8 steps
    for method in ("dsd", "tsd", "dsd-anchor"):
        assert DistillConfig(method=method, n_to=2).first_rule == "off"
    assert DistillConfig(method="dsd", teacher_first="all").first_rule == "all"
