"""The baselines on the same engine: PD's closed-form target, its loss, TSD's frozen teacher, DSD→PD stage
plans, NFE counts per method, and resume equality across a PD round boundary."""

import pytest
import torch

from dsd_core.checkpoint import load_model
from dsd_core.ddim import add_noise, ddim_step, pred_to_x0_eps, x0_reaching
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.dsd import loss_weight
from dsd_core.distill.methods import stage_methods
from dsd_core.distill.pd import pd_loss
from dsd_core.distill.runner import Distiller
from dsd_core.errors import DsdError
from dsd_core.runs import read_events
from dsd_core.schedule import NoiseSchedule

from .conftest import assert_resume_is_bit_identical

S = NoiseSchedule("linear")
CPU = torch.device("cpu")


@pytest.mark.parametrize("t, s", [(999, 624), (874, 624), (500, 250), (250, -1), (124, -1)])
def test_one_step_with_the_pd_target_lands_on_the_two_step_result(t, s):
    x_t, x_s = torch.randn(5, 1, 8, 8, dtype=torch.float64), torch.randn(5, 1, 8, 8, dtype=torch.float64)
    tt, ss = torch.full((5,), t), torch.full((5,), s)
    x0 = x0_reaching(x_t, x_s, tt, ss, S)
    landed = ddim_step(x0, x_t, tt, ss, S, "x0").prev_sample
    torch.testing.assert_close(landed, x_s, rtol=0, atol=1e-9)


def test_pd_target_formula_by_hand():
    t, s = torch.tensor([700]), torch.tensor([300])
    x_t, x_s = torch.full((1, 1, 2, 2), 0.3, dtype=torch.float64), torch.full((1, 1, 2, 2), -0.2, dtype=torch.float64)
    a_t, s_t = S.alpha_sigma(t)
    a_s, s_s = S.alpha_sigma(s)
    expected = (-0.2 - (s_s / s_t) * 0.3) / (a_s - (s_s / s_t) * a_t)
    torch.testing.assert_close(x0_reaching(x_t, x_s, t, s, S), expected.view(1, 1, 1, 1).expand(1, 1, 2, 2))


def _teacher_walk(teacher, x_t, t, t_mid, t_next):
    x_mid = ddim_step(teacher(x_t, t), x_t, t, t_mid, S, "eps", True).prev_sample
    return ddim_step(teacher(x_mid, t_mid), x_mid, t_mid, t_next, S, "eps", True).prev_sample


def test_pd_loss_matches_its_formula(tiny_model):
    x0, eps = torch.rand(4, 1, 8, 8) * 2 - 1, torch.randn(4, 1, 8, 8)
    t, t_mid, t_next = (torch.tensor([999, 749, 499, 249]), torch.tensor([874, 624, 374, 124]),
                        torch.tensor([749, 499, 249, -1]))
    teacher = lambda x, tt: 0.5 * tiny_model(x, tt)  # noqa: E731  (a different network from the student)
    res = pd_loss(tiny_model, teacher, x0, eps, t, t_mid, t_next, S, "eps", True)
    with torch.no_grad():
        x_t = add_noise(x0, eps, t, S)
        target = x0_reaching(x_t, _teacher_walk(teacher, x_t, t, t_mid, t_next), t, t_next, S)
        x0_s, _ = pred_to_x0_eps(tiny_model(x_t, t), x_t, t, S, "eps")
        expected = loss_weight("snr-trunc", t, S).float() * (x0_s - target).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(res.per_sample, expected, rtol=1e-5, atol=1e-6)
    assert res.loss.requires_grad


def test_pd_loss_is_zero_when_the_student_already_jumps_like_the_teacher():
    """A model predicting a fixed x0 is consistent along every DDIM path: the target is that x0."""
    x_star = torch.rand(3, 1, 8, 8, dtype=torch.float64) * 2 - 1

    def fixed_x0(x, t):  # ε-prediction of a fixed x0
        alpha, sigma = S.alpha_sigma(t)
        return (x - alpha.view(-1, 1, 1, 1) * x_star) / sigma.view(-1, 1, 1, 1)

    t, t_mid, t_next = torch.tensor([999, 600, 300]), torch.tensor([800, 400, 100]), torch.tensor([600, 200, -1])
    res = pd_loss(fixed_x0, fixed_x0, torch.zeros_like(x_star), torch.randn_like(x_star), t, t_mid, t_next, S,
                  "eps", False)
    assert float(res.loss) < 1e-12


def test_stage_methods():
    assert stage_methods("dsd", 3) == ["dsd"] * 3 and stage_methods("tsd", 2) == ["dsd"] * 2
    assert stage_methods("pd", 2) == ["pd", "pd"]
    assert stage_methods("dsd+pd", 5) == ["dsd", "dsd", "dsd", "pd", "pd"]
    assert stage_methods("dsd+pd", 5, pd_stages=1) == ["dsd"] * 4 + ["pd"]
    with pytest.raises(DsdError, match="dsd\\+pd needs"):
        stage_methods("dsd+pd", 1)


def _distiller(tiny_ckpt, run_dir, **kw):
    cfg = DistillConfig(**{**dict(schedule="iterative", n_from=16, n_to=4, updates=8, batch=6, lr=1e-4,
                                  sample_every=100, checkpoint_every=3, histogram_every=2, data="digits"), **kw})
    return Distiller(load_model(tiny_ckpt), cfg, run_dir, CPU, "tiny", "sha")


@pytest.mark.parametrize("method, nfe", [("dsd", 2 * 6 * 8), ("tsd", 2 * 6 * 8), ("pd", 3 * 6 * 8),
                                         ("dsd+pd", 2 * 6 * 4 + 3 * 6 * 4)])
def test_nfe_per_method(tiny_ckpt, tmp_path, method, nfe):
    d = _distiller(tiny_ckpt, tmp_path, method=method)
    path = d.run_loop()
    assert d.nfe["updates"] == nfe
    assert sum(d.histogram.per_finest_index()) == 6 * 8
    prov = load_model(path).meta["provenance"]
    assert prov["method"] == method and prov["nfe_per_update"] == nfe / 8
    stages = [e for e in read_events(tmp_path / "events.jsonl") if e["event"] == "stage"]
    assert [e["method"] for e in stages] == {"dsd": ["dsd"] * 2, "tsd": ["dsd"] * 2, "pd": ["pd"] * 2,
                                              "dsd+pd": ["dsd", "pd"]}[method]
    if method == "pd":
        assert d.nfe["warmup"] == 0  # PD starts from data, not from walked trajectories


def test_tsd_teacher_stays_the_starting_model(tiny_ckpt, tmp_path):
    d = _distiller(tiny_ckpt, tmp_path, method="tsd")
    start = {k: v.clone() for k, v in d.model.state_dict().items()}
    d.run_loop()
    assert d.teacher() is d.frozen_base
    assert all(torch.equal(start[k], v) for k, v in d.frozen_base.state_dict().items())
    assert not all(torch.equal(start[k], v) for k, v in d.model.state_dict().items())


def test_pd_rounds_freeze_the_previous_round_as_teacher(tiny_ckpt, tmp_path):
    d = _distiller(tiny_ckpt, tmp_path, method="pd")
    snapshots = []
    d.run_loop(lambda u, e: snapshots.append({k: v.clone() for k, v in d.ema.shadow.state_dict().items()})
               if u == 4 else None)
    teacher = d.round_teacher.state_dict()  # second round's teacher: the EMA after round one
    assert all(torch.equal(snapshots[0][k], teacher[k]) for k in teacher)
    assert d.opt.param_groups[0]["lr"] == d.cfg.pd_lr


@pytest.mark.parametrize("method", ["pd", "dsd+pd"])
def test_resume_across_a_pd_round_is_bit_identical(tiny_ckpt, tmp_path, method):
    # killed at update 11: the last checkpoint is at update 9, inside the second round (updates 7..12)
    assert_resume_is_bit_identical(lambda run_dir: _distiller(tiny_ckpt, run_dir, method=method, updates=12),
                                   tmp_path, kill_at=11)


def test_pd_needs_data_it_can_find(tiny_ckpt, tmp_path):
    with pytest.raises(DsdError, match="pass data"):
        _distiller(tiny_ckpt, tmp_path, method="pd", data="")
    with pytest.raises(DsdError, match="not found|no images|does not exist"):
        _distiller(tiny_ckpt, tmp_path, method="pd", data=str(tmp_path / "nowhere"))
