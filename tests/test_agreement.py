"""The run's data-free agreement check (dsd_core/distill/agreement.py): PSNR's closed form, zero error for the
starting model at its own grid, events and best snapshots in a run, and that the check never changes the run."""

from __future__ import annotations

import math

import pytest
import torch

from dsd_core.checkpoint import LoadedModel, load_model
from dsd_core.distill.agreement import Agreement, psnr
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.runner import Distiller
from dsd_core.events import QualityEvent, read_events
from dsd_core.schedule import NoiseSchedule

CPU = torch.device("cpu")


def test_psnr_of_images_in_minus_one_to_one():
    assert psnr(0.01) == pytest.approx(10 * math.log10(4 / 0.01))  # peak-to-peak 2: 26.02 dB
    assert psnr(4.0) == pytest.approx(0.0) and psnr(0.0) == 99.0


def test_the_starting_model_agrees_with_itself_at_its_own_grid_only(tiny_model):
    start = LoadedModel(tiny_model, NoiseSchedule("linear"), "eps")
    check = Agreement(start, 8, num=6, device=CPU)
    assert check.reference.shape == (6, 1, 8, 8)
    assert check.score(start, 8) == (0.0, 99.0)
    mse, db = check.score(start, 2)  # fewer steps: another map
    assert mse > 0 and db == pytest.approx(psnr(mse))
    assert mse == pytest.approx(float(((check.draw(start, 2) - check.reference) ** 2).mean()))


def _run(tiny_ckpt, run_dir, **kw):
    cfg = DistillConfig(**{**dict(method="dsd", schedule="iterative", n_from=8, n_to=2, updates=8, batch=4, lr=1e-3,
                                  sample_every=100, checkpoint_every=100, quality_every=2, quality_num=8,
                                  stop_when_worse=0), **kw})
    d = Distiller(load_model(tiny_ckpt), cfg, run_dir, CPU, "tiny", "sha")
    return d, d.run_loop()


def test_a_run_checks_at_its_interval_and_keeps_the_best_snapshot(tiny_ckpt, tmp_path):
    d, path = _run(tiny_ckpt, tmp_path / "best")
    checks = [e for e in read_events(tmp_path / "best" / "events.jsonl") if isinstance(e, QualityEvent)]
    assert [(e.update, e.steps) for e in checks] == [(2, 4), (4, 4), (6, 2), (8, 2)]
    best = max((e for e in checks if e.steps == 2), key=lambda e: e.psnr)
    assert best.best and d.best["2"] == best.psnr
    assert path.read_bytes() == (tmp_path / "best" / "model-best-2steps.safetensors").read_bytes()
    assert load_model(path).meta["provenance"]["updates"] == best.update


def test_the_check_never_changes_the_run(tiny_ckpt, tmp_path):
    _, checked = _run(tiny_ckpt, tmp_path / "a", keep="last")
    _, unchecked = _run(tiny_ckpt, tmp_path / "b", keep="last", quality_every=0)
    a, b = load_model(checked).model.state_dict(), load_model(unchecked).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "b" / "model-best-2steps.safetensors").exists()


@pytest.mark.parametrize("method, keeps_best", [("dsd", True), ("dsd-anchor", True), ("tsd", False),
                                               ("dsd-stage", False)])
def test_keep_auto_ships_the_best_snapshot_only_for_the_methods_that_drift(tiny_ckpt, tmp_path, method, keeps_best):
    extra = {"anchor_cache": 6} if method == "dsd-anchor" else {}
    d, path = _run(tiny_ckpt, tmp_path, method=method, **extra)
    assert d.cfg.keep == "auto" and d.cfg.keeps_best == keeps_best
    best = (tmp_path / "model-best-2steps.safetensors").read_bytes()
    if keeps_best:
        assert path.read_bytes() == best
    else:
        assert load_model(path).meta["provenance"]["updates"] == 8  # the last EMA, whatever agreed best


def test_the_in_run_fd_is_what_dsd_eval_scores_for_the_same_samples(tiny_model):
    from dsd_core.distill.fd_check import FD_SEED, FdCheck
    from dsd_core.evaluate import digits_reference, evaluate
    from dsd_core.features import DigitsFeatures
    from dsd_core.images import to_uint8
    from dsd_core.sampling import sample

    loaded = LoadedModel(tiny_model, NoiseSchedule("linear"), "eps")
    got = FdCheck(120, CPU).score(loaded, 2)
    expected = evaluate(to_uint8(sample(loaded, 2, num=120, seed=FD_SEED)), digits_reference(), DigitsFeatures(),
                        warn=False)
    assert got == {k: pytest.approx(expected[k], rel=1e-9) for k in ("fd", "precision", "recall")}


def test_a_run_logs_fd_beside_the_agreement_only_for_digits_models(tiny_ckpt, tmp_path):
    from dsd_core.errors import OptionError

    with pytest.raises(OptionError, match="quality.fd needs an unconditional model of the digits"):
        _run(tiny_ckpt, tmp_path / "other", quality_fd=100)
    base = load_model(tiny_ckpt)
    base.meta["provenance"] = {"data": "digits"}
    cfg = DistillConfig(schedule="iterative", n_from=8, n_to=2, updates=4, batch=4, sample_every=100,
                        checkpoint_every=100, quality_every=2, quality_num=4, quality_fd=100, stop_when_worse=0)
    d = Distiller(base, cfg, tmp_path / "digits", CPU, "tiny", "sha")
    d.run_loop()
    checks = [e for e in read_events(tmp_path / "digits" / "events.jsonl") if isinstance(e, QualityEvent)]
    assert len(checks) == 2 and all(e.fd > 0 and 0 <= e.precision <= 1 and 0 <= e.recall <= 1 for e in checks)
    assert d.last_quality == (2, checks[-1].psnr, checks[-1].fd)  # what the progress line shows
    with pytest.raises(OptionError, match="needs quality.every above 0"):
        DistillConfig(quality_every=0, quality_fd=100)


def test_the_fd_check_never_changes_the_run_either(tiny_ckpt, tmp_path):
    weights = []
    for quality_fd in (0, 100):
        base = load_model(tiny_ckpt)
        base.meta["provenance"] = {"data": "digits"}
        cfg = DistillConfig(method="dsd-stage", schedule="iterative", n_from=8, n_to=2, updates=4, batch=4,
                            sample_every=100, checkpoint_every=100, quality_every=2, quality_num=4,
                            quality_fd=quality_fd)
        path = Distiller(base, cfg, tmp_path / str(quality_fd), CPU, "tiny", "sha").run_loop()
        weights.append(load_model(path).model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
