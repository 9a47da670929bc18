import json

import pytest
import torch

from dsd_core.checkpoint import load_model
from dsd_core.data import load_digits
from dsd_core.errors import DsdError
from dsd_core.runs import read_events
from dsd_core.train import TrainConfig, Trainer

from .conftest import TINY

CPU = torch.device("cpu")


def _cfg(**kw):
    base = dict(steps=12, batch=16, lr=2e-3, warmup=2, log_every=1, sample_every=1000, sample_steps=2,
                checkpoint_every=4)
    return TrainConfig(**{**base, **kw})


def test_tiny_training_lowers_the_loss(tmp_path):
    data = load_digits()[0][:256]
    path = Trainer(data, TINY, _cfg(steps=60, batch=32), tmp_path, CPU).run_loop()
    losses = [e["loss"] for e in read_events(tmp_path / "events.jsonl") if e["event"] == "loss"]
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10
    loaded = load_model(path)
    assert loaded.meta["provenance"]["steps"] == 60 and loaded.meta["ema"] is True
    kinds = [e["event"] for e in read_events(tmp_path / "events.jsonl")]
    assert kinds[0] == "config" and kinds[-1] == "end" and "samples" in kinds and "checkpoint" in kinds
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 60


def test_resume_after_a_kill_is_bit_identical(tmp_path):
    data = load_digits()[0][:64]
    straight = Trainer(data, TINY, _cfg(), tmp_path / "a", CPU).run_loop()

    def kill_at_step_10(step, loss):
        if step == 10:  # the last checkpoint was written at step 8
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(data, TINY, _cfg(), tmp_path / "b", CPU).run_loop(kill_at_step_10)
    resumed = Trainer(data, TINY, _cfg(), tmp_path / "b", CPU).run_loop(resume=True)
    a, b = load_model(straight).model.state_dict(), load_model(resumed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e["step"] for e in read_events(tmp_path / "b" / "events.jsonl") if e["event"] == "resume"] == [8]


def test_resume_needs_a_state_and_the_same_settings(tmp_path):
    data = load_digits()[0][:64]
    with pytest.raises(DsdError, match="nothing to resume"):
        Trainer(data, TINY, _cfg(), tmp_path, CPU).run_loop(resume=True)
    Trainer(data, TINY, _cfg(steps=4), tmp_path, CPU).run_loop()
    with pytest.raises(DsdError, match="other settings"):
        Trainer(data, TINY, _cfg(steps=4, lr=1.0), tmp_path, CPU).run_loop(resume=True)


def test_data_that_does_not_fit_the_model(tmp_path):
    with pytest.raises(DsdError, match="does not fit"):
        Trainer(torch.zeros(4, 3, 8, 8), TINY, _cfg(), tmp_path, CPU)


@pytest.mark.parametrize("field", ["steps", "batch"])
def test_impossible_settings(field):
    with pytest.raises(DsdError, match=field):
        TrainConfig(**{field: 0})


SD = dict(self_distill=True, sd_every=2, sd_steps=2, sd_batch=5)


def test_self_distill_interleaves_counted_dsd_updates(tmp_path):
    data = load_digits()[0][:64]
    trainer = Trainer(data, TINY, _cfg(**SD), tmp_path, CPU)
    path = trainer.run_loop()
    # 6 DSD updates (every 2nd of 12 steps), 2 NFE per trajectory, plus the pool's counted warm-up
    warmup = 2 * (5 // 2)  # trajectories starting at pair 1 of the 4-step grid walk 2 steps first
    assert trainer.sd.nfe == 6 * 2 * 5 + warmup
    assert sum(trainer.sd.histogram.per_finest_index()) == 6 * 5
    assert trainer.sd.opt is not trainer.opt and trainer.sd.opt.param_groups[0]["lr"] > 0
    prov = load_model(path).meta["provenance"]["self_distill"]
    assert prov == {"every": 2, "lr_scale": 0.1, "steps": 2, "batch": 5, "nfe": trainer.sd.nfe}
    losses = [e for e in read_events(tmp_path / "events.jsonl") if e["event"] == "loss"]
    assert [e["sd_loss"] is None for e in losses[:2]] == [True, False]  # the first DSD update is at step 2


def test_self_distill_changes_the_weights_and_resumes_bit_identical(tmp_path):
    data = load_digits()[0][:64]
    plain = load_model(Trainer(data, TINY, _cfg(), tmp_path / "p", CPU).run_loop()).model.state_dict()
    straight = Trainer(data, TINY, _cfg(**SD), tmp_path / "a", CPU).run_loop()

    def kill_at_step_10(step, loss):
        if step == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(data, TINY, _cfg(**SD), tmp_path / "b", CPU).run_loop(kill_at_step_10)
    resumed = Trainer(data, TINY, _cfg(**SD), tmp_path / "b", CPU).run_loop(resume=True)
    a, b = load_model(straight).model.state_dict(), load_model(resumed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], plain[k]) for k in a)


def test_ctrl_c_checkpoints_then_stops_and_the_resume_is_bit_identical(tmp_path, monkeypatch):
    from dsd_core import interrupt

    data = load_digits()[0][:64]
    straight = Trainer(data, TINY, _cfg(), tmp_path / "a", CPU).run_loop()

    def ctrl_c_at_step_5(step, loss):
        if step == 5:  # between checkpoints (every 4): the stop itself must checkpoint
            monkeypatch.setattr(interrupt, "_requested", True)

    with pytest.raises(interrupt.Interrupted, match="checkpoint at step 5 saved; resume with: dsd train --resume"):
        Trainer(data, TINY, _cfg(), tmp_path / "b", CPU).run_loop(ctrl_c_at_step_5)
    monkeypatch.setattr(interrupt, "_requested", False)
    events = read_events(tmp_path / "b" / "events.jsonl")
    assert [e["step"] for e in events if e["event"] == "interrupted"] == [5]
    resumed = Trainer(data, TINY, _cfg(), tmp_path / "b", CPU).run_loop(resume=True)
    assert [e["step"] for e in read_events(tmp_path / "b" / "events.jsonl") if e["event"] == "resume"] == [5]
    a, b = load_model(straight).model.state_dict(), load_model(resumed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
