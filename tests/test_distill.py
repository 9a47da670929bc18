"""DSD: step schedulers and their budgets, the histogram, the trajectory pool, the pair loss against closed
forms, NFE counts, NaN handling, and a resumed run ending bit-identical to an uninterrupted one."""

import pytest
import torch

from dsd_core.checkpoint import load_model
from dsd_core.ddim import ddim_step, target_for
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.dsd import dsd_pair_loss, in_chunks, loss_weight
from dsd_core.distill.pool import TrajectoryPool
from dsd_core.distill.runner import Distiller
from dsd_core.distill.stepping import StepHistogram, build_stages, split_budget
from dsd_core.errors import DsdError
from dsd_core.runs import read_events
from dsd_core.schedule import NoiseSchedule
from dsd_core.timesteps import ddim_timesteps

from .conftest import assert_resume_is_bit_identical

S = NoiseSchedule("linear")
CPU = torch.device("cpu")


# -- schedulers ---------------------------------------------------------------------------------------
def test_stage_lists():
    assert [(s.steps, s.updates) for s in build_stages("naive", 64, 8, 100)] == [(16, 100)]
    assert [(s.steps, s.updates) for s in build_stages("iterative", 64, 8, 100)] == [(64, 34), (32, 33), (16, 33)]
    gl = build_stages("gradual-linear", 64, 8, 250)
    assert [s.steps for s in gl] == list(range(64, 15, -2)) and sum(s.updates for s in gl) == 250
    ge = build_stages("gradual-exp", 64, 8, 1000)
    assert [s.steps for s in ge] == [s.steps for s in gl] and sum(s.updates for s in ge) == 1000
    shares = [s.updates for s in ge]
    assert shares == sorted(shares, reverse=True) and shares[0] > 10 * shares[-1]


def test_split_budget_is_exact():
    assert split_budget(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(split_budget(997, [0.3, 2.0, 1.1, 5.0])) == 997


@pytest.mark.parametrize(
    "args, needle",
    [
        (("iterative", 48, 8, 100), "power-of-two"),
        (("iterative", 8, 8, 100), "at least twice"),
        (("gradual-linear", 63, 8, 100), "even"),
        (("iterative", 64, 8, 2), "cannot cover"),
        (("iterative", 64, 0, 100), "at least 1"),
        (("warp", 64, 8, 100), "unknown step schedule"),
        (("iterative", 2048, 8, 100), "exceeds"),
    ],
)
def test_impossible_schedules(args, needle):
    with pytest.raises(DsdError, match=needle):
        build_stages(*args)


def test_histogram_maps_coarse_grids_onto_the_finest():
    hist = StepHistogram(64)
    hist.add(ddim_timesteps(32)[0::2])  # the students of the 32-step stage: every 4th index of the 64 grid
    per_index = hist.per_finest_index()
    assert sum(per_index) == 16
    assert [i for i, c in enumerate(per_index) if c] == list(range(0, 64, 4))


# -- pool -----------------------------------------------------------------------------------------------
def _zero_model(x, t):
    return torch.zeros_like(x)


def test_staggered_pool_starts_spread_and_counts_warmup():
    pool = TrajectoryPool(6, (1, 2, 2), torch.Generator().manual_seed(0), CPU, lockstep=False)
    evals = pool.start_stage(8, 1000, _zero_model, S, "eps", True)
    assert pool.k.tolist() == [0, 1, 2, 3, 0, 1]
    assert evals == sum(2 * k for k in pool.k.tolist())
    pool.advance(pool.x)
    pool.advance(pool.x)
    assert pool.k.tolist() == [2, 3, 0, 1, 2, 3]  # trajectories that finished restarted at pair 0


def test_lockstep_pool_moves_together():
    pool = TrajectoryPool(5, (1, 2, 2), torch.Generator().manual_seed(0), CPU, lockstep=True)
    assert pool.start_stage(8, 1000, _zero_model, S, "eps", True) == 0
    for _ in range(4):
        assert len(set(pool.k.tolist())) == 1
        pool.advance(pool.x)
    assert pool.k.tolist() == [0] * 5


# -- the update ---------------------------------------------------------------------------------------
def _oracle(x_star):
    def model(x_t, t):
        alpha, sigma = S.alpha_sigma(t)
        eps = (x_t - alpha.view(-1, 1, 1, 1) * x_star) / sigma.view(-1, 1, 1, 1)
        return target_for("eps", x_star.expand_as(x_t), eps, t, S)

    return model


def test_a_model_consistent_along_its_trajectory_has_zero_loss():
    x_star = torch.linspace(-0.9, 0.9, 16, dtype=torch.float64).view(1, 1, 4, 4)
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    t, mid, nxt = torch.tensor([999, 749, 499]), torch.tensor([874, 624, 374]), torch.tensor([749, 499, 249])
    res = dsd_pair_loss(_oracle(x_star), _oracle(x_star), x, t, mid, nxt, S, "eps")
    assert float(res.loss) < 1e-18
    two = ddim_step(_oracle(x_star)(x, t), x, t, nxt, S).prev_sample  # one big step = two small ones
    torch.testing.assert_close(res.x_next, two, rtol=0, atol=1e-9)


def test_pair_loss_matches_its_formula(tiny_model):
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    t, mid, nxt = torch.tensor([999, 499, 249, 124]), torch.tensor([874, 374, 124, 61]), torch.tensor([749, 249, 0, -1])
    res = dsd_pair_loss(tiny_model, tiny_model, x, t, mid, nxt, S, "eps", weight="authors", clip_x0=True)
    with torch.no_grad():
        pred = tiny_model(x, t)
        x0_s = ((x - (1 - S.alpha_bar(t)).sqrt().view(-1, 1, 1, 1).float() * pred)
                / S.alpha_bar(t).sqrt().view(-1, 1, 1, 1).float())
        x_mid = ddim_step(pred, x, t, mid, S, clip_x0=True).prev_sample
        target = ddim_step(tiny_model(x_mid, mid), x_mid, mid, nxt, S, clip_x0=True).pred_x0
        w = S.log_snr(t).clamp(min=1).float()
        expected = (w * (x0_s - target).pow(2).flatten(1).mean(1)).mean()
    torch.testing.assert_close(res.loss.detach(), expected, rtol=1e-5, atol=0)
    res.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.parameters())


def test_loss_weights():
    t = torch.tensor([999, 500, 10])
    torch.testing.assert_close(loss_weight("authors", t, S), S.log_snr(t).clamp(min=1))
    torch.testing.assert_close(loss_weight("snr-trunc", t, S), S.log_snr(t).exp().clamp(min=1))
    assert loss_weight("constant", t, S).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(DsdError):
        loss_weight("nope", t, S)


# -- runs -----------------------------------------------------------------------------------------------
def _distiller(tiny_ckpt, run_dir, **kw):
    cfg = DistillConfig(**{**dict(method="dsd", schedule="iterative", n_from=16, n_to=4, updates=8, batch=6, lr=1e-4,
                                  sample_every=100, checkpoint_every=3, histogram_every=2), **kw})
    return Distiller(load_model(tiny_ckpt), cfg, run_dir, CPU, "tiny", "sha")


def test_run_counts_nfe_and_histogram_and_writes_a_distilled_model(tiny_ckpt, tmp_path):
    d = _distiller(tiny_ckpt, tmp_path)
    path = d.run_loop()
    assert d.nfe["updates"] == 2 * 6 * 8
    assert sum(d.histogram.per_finest_index()) == 6 * 8
    loaded = load_model(path)
    prov = loaded.meta["provenance"]
    assert loaded.distilled_steps == 4 and prov["method"] == "dsd" and prov["schedule"] == "iterative"
    assert prov["updates"] == 8 and prov["nfe_per_update"] == 12
    assert (tmp_path / "model-8steps.safetensors").is_file()  # the snapshot after the 16-step stage
    kinds = [e["event"] for e in read_events(tmp_path / "events.jsonl")]
    for kind in ("config", "stage", "loss", "histogram", "samples", "checkpoint", "snapshot", "end"):
        assert kind in kinds
    assert kinds.count("loss") == 8


def test_lockstep_histogram_has_one_index_per_update(tiny_ckpt, tmp_path):
    d = _distiller(tiny_ckpt, tmp_path, schedule="naive", lockstep=True, updates=4)
    d.run_loop()
    losses = [e for e in read_events(tmp_path / "events.jsonl") if e["event"] == "loss"]
    assert [list(e["loss_by_pair"]) for e in losses] == [["0"], ["1"], ["2"], ["3"]]


def test_resume_after_a_kill_is_bit_identical(tiny_ckpt, tmp_path):
    # killed at update 7: the last checkpoint is at update 6, inside the second stage
    again = assert_resume_is_bit_identical(lambda run_dir: _distiller(tiny_ckpt, run_dir), tmp_path, kill_at=7)
    with pytest.raises(DsdError, match="already finished"):
        again.run_loop(resume=True)


def test_nan_loss_skips_the_update_and_never_reaches_a_checkpoint(tiny_ckpt, tmp_path, monkeypatch):
    import dsd_core.distill.updates.dsd as dsd_update

    real = dsd_update.dsd_pair_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        res = real(*args, **kwargs)
        if calls["n"] == 2:
            res.loss = res.loss * float("nan")
            res.x_next[0] = float("nan")
        return res

    monkeypatch.setattr(dsd_update, "dsd_pair_loss", flaky)
    d = _distiller(tiny_ckpt, tmp_path, updates=4)
    path = d.run_loop()
    assert d.skipped == 1 and sum(d.histogram.per_finest_index()) == 3 * 6
    assert all(torch.isfinite(p).all() for p in load_model(path).model.parameters())
    warnings = [e for e in read_events(tmp_path / "events.jsonl") if e["event"] == "warning"]
    assert len(warnings) == 1 and "skipped" in warnings[0]["message"]


def test_endless_nans_stop_the_run(tiny_ckpt, tmp_path, nan_dsd_loss):
    with pytest.raises(DsdError, match="non-finite losses in a row"):
        _distiller(tiny_ckpt, tmp_path, updates=40).run_loop()


def test_ema_teacher_differs_from_self_teacher(tiny_ckpt, tmp_path):
    a = load_model(_distiller(tiny_ckpt, tmp_path / "a", updates=4, ema_teacher=False,
                              ema_decay=0.9).run_loop()).model.state_dict()
    b = load_model(_distiller(tiny_ckpt, tmp_path / "b", updates=4, ema_teacher=True,
                              ema_decay=0.9).run_loop()).model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_teacher_in_chunks_gives_the_unsliced_result_and_sees_each_slice(tiny_model):
    torch.manual_seed(0)
    x, t, labels = torch.randn(10, 1, 8, 8), torch.randint(0, 1000, (10,)), torch.arange(10)
    seen = []

    def net(x, t, labels=None):
        seen.append((len(x), None if labels is None else labels.tolist()))
        return tiny_model(x, t)

    with torch.no_grad():
        whole = tiny_model(x, t)
        torch.testing.assert_close(in_chunks(net, 3)(x, t, labels), whole, rtol=0, atol=1e-6)
        assert seen == [(4, [0, 1, 2, 3]), (4, [4, 5, 6, 7]), (2, [8, 9])]
        seen.clear()
        in_chunks(net, 3)(x, t)
        assert [n for n, _ in seen] == [4, 4, 2]
    assert in_chunks(net, 1) is net


def test_a_run_with_a_chunked_teacher_matches_the_plain_run(tiny_ckpt, tmp_path):
    plain = load_model(_distiller(tiny_ckpt, tmp_path / "a", updates=4).run_loop()).model.state_dict()
    sliced = load_model(
        _distiller(tiny_ckpt, tmp_path / "b", updates=4, teacher_chunks=3).run_loop()).model.state_dict()
    for k in plain:
        torch.testing.assert_close(sliced[k], plain[k], rtol=1e-4, atol=1e-6)
    with pytest.raises(DsdError, match="teacher_chunks must be at least 1"):
        DistillConfig(teacher_chunks=0)
