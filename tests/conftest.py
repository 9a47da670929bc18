"""Shared fixtures: a tiny random model checkpoint, seeded torch, and a DSD loss that is always NaN."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dsd_core.checkpoint import save_model
from dsd_core.models import UNet, UNetConfig
from dsd_core.schedule import NoiseSchedule

# One thread: tiny models gain nothing from more, and two multi-threaded torch processes on a 2-core machine
# (a test run beside a benchmark) slow each other down by an order of magnitude.
torch.set_num_threads(1)

TINY = UNetConfig(image_size=8, in_channels=1, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                  attention_levels=(1,), num_groups=8)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def tiny_unet(num_classes: int | None = None) -> UNet:
    """The tests' random tiny UNet, the same weights each call (seed 1), perturbed so that its zero-initialised
    output layers do not make every prediction 0."""
    torch.manual_seed(1)
    model = UNet(dataclasses.replace(TINY, num_classes=num_classes))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.fixture
def tiny_model() -> UNet:
    return tiny_unet()


@pytest.fixture
def tiny_ckpt(tmp_path, tiny_model):
    return save_model(tmp_path / "tiny.safetensors", tiny_model, NoiseSchedule("linear"), "eps", ema=True,
                      provenance={"made_by": "test"})


@pytest.fixture
def nan_dsd_loss(monkeypatch):
    """Every DSD update's loss becomes NaN (the runner's dsd_pair_loss, wrapped)."""
    import dsd_core.distill.updates.dsd as runner

    real = runner.dsd_pair_loss

    def nan_loss(*args, **kwargs):
        res = real(*args, **kwargs)
        res.loss = res.loss * float("nan")
        return res

    monkeypatch.setattr(runner, "dsd_pair_loss", nan_loss)


def assert_resume_is_bit_identical(make_run, tmp_path, kill_at: int):
    """A run killed after update `kill_at` and resumed ends with exactly the weights of a straight run;
    `make_run(run_dir)` makes the run (a Distiller) fresh each time."""
    from dsd_core.checkpoint import load_model

    straight = make_run(tmp_path / "a").run_loop()

    def kill(update, event):
        if update == kill_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_run(tmp_path / "b").run_loop(kill)
    resumed = make_run(tmp_path / "b").run_loop(resume=True)
    a, b = load_model(straight).model.state_dict(), load_model(resumed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    return make_run(tmp_path / "b")
