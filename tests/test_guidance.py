"""Class-conditional models and classifier-free guidance: the guided step, its NFE, conditional training,
guided DSD (4 NFE per update), the ONNX guidance input, mixed precision, and the one-line errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dsd_core.accel import autocast_net
from dsd_core.checkpoint import LoadedModel, load_model, save_model
from dsd_core.classes import class_ids
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.runner import Distiller
from dsd_core.errors import DsdError
from dsd_core.evaluate import per_class_accuracy
from dsd_core.guidance import guided_prediction
from dsd_core.models import UNet
from dsd_core.nfe import NFECounter
from dsd_core.sampling import sample
from dsd_core.schedule import NoiseSchedule
from dsd_core.train import TrainConfig, Trainer, denoising_loss, drop_labels
from dsd_tui.cli import app

from .conftest import TINY

COND = dataclasses.replace(TINY, num_classes=3)
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def cond_model() -> UNet:
    torch.manual_seed(1)
    model = UNet(COND)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.fixture
def cond_ckpt(tmp_path, cond_model):
    return save_model(tmp_path / "cond.safetensors", cond_model, NoiseSchedule("linear"), "eps", ema=True)


def test_guided_prediction_is_uncond_plus_w_times_the_difference_in_one_call_of_2b(cond_model):
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor([999, 500, 10, 0]), torch.tensor([0, 1, 2, 0])
    counter = NFECounter()
    net = counter.wrap(cond_model)
    with torch.no_grad():
        got = guided_prediction(net, x, t, y, 3.0, 3)
        cond, uncond = cond_model(x, t, y), cond_model(x, t, torch.full_like(y, 3))
    assert counter.evaluations == 8  # one batch of 2B
    torch.testing.assert_close(got, uncond + 3.0 * (cond - uncond), rtol=1e-5, atol=1e-5)
    assert (cond - uncond).abs().max() > 1e-3  # the class reaches the output
    for w, expected, evals in ((1.0, cond, 4), (0.0, uncond, 4)):  # the end points cost one evaluation
        counter.evaluations = 0
        with torch.no_grad():
            torch.testing.assert_close(guided_prediction(net, x, t, y, w, 3), expected)
        assert counter.evaluations == evals
    per_sample = torch.tensor([3.0, 1.0, 0.0, 2.0])  # the ONNX graph's per-sample w
    with torch.no_grad():
        mixed = guided_prediction(cond_model, x, t, y, per_sample, 3)
    torch.testing.assert_close(mixed, uncond + per_sample.view(-1, 1, 1, 1) * (cond - uncond), rtol=1e-5, atol=1e-5)


def test_sampling_counts_two_evaluations_per_guided_step(cond_model):
    loaded = LoadedModel(cond_model, NoiseSchedule("linear"), "eps")
    counter = NFECounter()
    classes = class_ids("1", 5, 3)
    guided = sample(loaded, 4, num=5, seed=0, classes=classes, guidance=3.0, counter=counter)
    assert counter.per_sample(5) == 8
    plain = sample(loaded, 4, num=5, seed=0, classes=classes, guidance=1.0)
    assert (guided - plain).abs().max() > 1e-3


def test_class_ids_and_errors():
    assert class_ids(None, 5, 3).tolist() == [0, 1, 2, 0, 1]
    assert class_ids("none", 2, 3).tolist() == [3, 3] and class_ids("2", 2, 3).tolist() == [2, 2]
    assert class_ids(None, 4, None) is None
    with pytest.raises(DsdError, match="class 3 is out of range: this model has classes 0 … 2"):
        class_ids("3", 1, 3)
    with pytest.raises(DsdError, match="needs a class-conditional model"):
        class_ids("1", 1, None)
    with pytest.raises(DsdError, match="class id, 'all' or 'none'"):
        class_ids("seven", 1, 3)


def test_cli_one_line_errors_for_class_and_guidance(tiny_ckpt, cond_ckpt, tmp_path):
    for args, needle in (((tiny_ckpt, "--guidance", 3), "--guidance needs a class-conditional model"),
                         ((tiny_ckpt, "--class", 1), "--class needs a class-conditional model"),
                         ((cond_ckpt, "--class", 7), "class 7 is out of range"),
                         ((cond_ckpt, "--class", 1, "--guidance", -1), "finite number ≥ 0")):
        result = run("sample", "--model", *args, "--steps", 2, "--num", 2, tmp_path / "x.png")
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error:") and needle in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "x.png").exists()


def test_label_dropout_and_conditional_training(tmp_path):
    gen = torch.Generator().manual_seed(0)
    dropped = drop_labels(torch.zeros(10000, dtype=torch.long), 10, 0.1, gen)
    assert set(dropped.unique().tolist()) == {0, 10} and abs(float((dropped == 10).float().mean()) - 0.1) < 0.01
    data = torch.rand(12, 1, 8, 8) * 2 - 1
    labels = torch.arange(12) % 3
    cfg = TrainConfig(steps=3, batch=4, sample_every=3, checkpoint_every=3, conditional=True, warmup=1)
    path = Trainer(data, COND, cfg, tmp_path / "run", torch.device("cpu"), labels=labels).run_loop()
    loaded = load_model(path)
    assert loaded.model.config.num_classes == 3 and loaded.meta["provenance"]["conditional"] is True
    with pytest.raises(DsdError, match="conditional training needs a model with classes"):
        Trainer(data, TINY, cfg, tmp_path / "bad", torch.device("cpu"), labels=labels)
    with pytest.raises(DsdError, match="label 5 is out of range"):
        Trainer(data, COND, cfg, tmp_path / "bad2", torch.device("cpu"), labels=labels + 3)


def test_guided_dsd_doubles_the_nfe_and_records_the_scale(cond_ckpt, tmp_path):
    cfg = DistillConfig(schedule="naive", n_to=2, updates=3, batch=4, guidance=3.0, sample_every=100,
                        checkpoint_every=2, teacher_first="off")
    distiller = Distiller(load_model(cond_ckpt), cfg, tmp_path / "run", torch.device("cpu"))
    path = distiller.run_loop()
    loaded = load_model(path)
    assert loaded.guidance == 3.0 and loaded.meta["provenance"]["nfe_per_update"] == 4 * 4
    first = Distiller(load_model(cond_ckpt), DistillConfig(**{**cfg.__dict__, "teacher_first": "auto"}),
                      tmp_path / "first", torch.device("cpu"))  # dsd-stage's last (here: only) stage, teacher first
    assert load_model(first.run_loop()).meta["provenance"]["nfe_per_update"] == 6 * 4
    labels = distiller.pool.labels
    assert labels is not None and labels.shape == (4,) and int(labels.max()) < 3
    # resuming restores each trajectory's class with the pool
    resumed = Distiller(load_model(cond_ckpt), cfg, tmp_path / "run", torch.device("cpu"))
    assert resumed.load_state() and resumed.pool.labels.tolist() == distiller_labels_at(tmp_path / "run")
    with pytest.raises(DsdError, match="needs a class-conditional model"):
        Distiller(load_model("digits"), DistillConfig(guidance=3.0), tmp_path / "x", torch.device("cpu"))
    with pytest.raises(DsdError, match="PD of class-conditional models"):
        Distiller(load_model(cond_ckpt), DistillConfig(method="pd", n_from=4, n_to=2, data="digits"),
                  tmp_path / "y", torch.device("cpu"))


def distiller_labels_at(run_dir) -> list[int]:
    from dsd_core.checkpoint import load_tensors

    tensors, _ = load_tensors(run_dir / "checkpoints" / "state.safetensors")
    return tensors["pool.labels"].tolist()


def test_bf16_autocast_keeps_the_loss_fp32_and_finite(tiny_model):
    net = autocast_net(tiny_model.train(), torch.device("cpu"), "bf16")
    seen = []

    def spy(*args):
        out = tiny_model(*args)
        seen.append(out.dtype)
        return out

    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    loss = denoising_loss(autocast_net(spy, torch.device("cpu"), "bf16"), x0, NoiseSchedule("linear"), "eps",
                          torch.Generator().manual_seed(0))
    assert seen == [torch.bfloat16]  # the network did run in bf16 …
    assert loss.dtype == torch.float32 and torch.isfinite(loss)  # … the loss is fp32
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in tiny_model.parameters())
    exact = denoising_loss(tiny_model, x0, NoiseSchedule("linear"), "eps", torch.Generator().manual_seed(0))
    assert abs(float(loss.detach()) - float(exact.detach())) < 0.05 * float(exact.detach())
    assert net is not tiny_model


def test_onnx_guidance_input_matches_torch(cond_ckpt, tmp_path):
    out = tmp_path / "c.onnx"
    assert run("export", "--onnx", "--model", cond_ckpt, "--steps", 3, "--guidance", 2.5, out).exit_code == 0
    from exporters.runtime import OnnxSampler

    sampler = OnnxSampler(out, threads=1)
    assert sampler.takes_guidance and sampler.default_guidance == 2.5
    loaded = load_model(cond_ckpt)
    for w in (None, 0.0, 3.0):
        got = sampler.sample(6, seed=2, class_labels=class_ids("2", 6, 3), guidance=w)
        expected = sample(loaded, 3, 6, seed=2, classes=class_ids("2", 6, 3), guidance=2.5 if w is None else w)
        np.testing.assert_allclose(got, (expected.numpy() + 1) / 2, atol=1e-4)
    onnx_png, torch_npz = tmp_path / "o.npz", tmp_path / "t.npz"
    assert run("sample", "--model", out, "--class", 1, "--guidance", 3, "--num", 4, onnx_png).exit_code == 0
    assert run("sample", "--model", cond_ckpt, "--steps", 3, "--class", 1, "--guidance", 3, "--num", 4,
               torch_npz).exit_code == 0
    a, b = np.load(onnx_png)["arr_0"].astype(int), np.load(torch_npz)["arr_0"].astype(int)
    assert np.abs(a - b).max() <= 1


def test_per_class_accuracy():
    acc = per_class_accuracy(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert acc == {"accuracy": 0.75, "per_class": {"0": 1.0, "1": 1.0, "2": 0.5}}


def test_conditional_onnx_samples_a_class_without_torch(cond_ckpt, tmp_path):
    from .test_onnx_notorch import dsd_without_torch

    out = tmp_path / "c.onnx"
    assert run("export", "--onnx", "--model", cond_ckpt, "--steps", 2, out).exit_code == 0
    done = dsd_without_torch("sample", "--model", out, "--class", 2, "--guidance", 3, "--num", 3, "--threads", 1,
                             tmp_path / "o.npz")
    assert done.returncode == 0, done.stderr
    assert "torch modules: []" in done.stderr
    bad = dsd_without_torch("sample", "--model", out, "--class", 9, tmp_path / "bad.npz")
    assert bad.returncode == 2 and "class 9 is out of range" in bad.stderr


def test_shipped_conditional_models_draw_the_asked_digit():
    from dsd_core.features import DigitsFeatures
    from dsd_core.images import to_uint8

    feats, classes = DigitsFeatures(), class_ids("all", 40, 10)
    for model, steps in (("digits-cond", 16), ("digits-cond-dsd8", 8)):
        images = to_uint8(sample(load_model(model), steps, 40, seed=0, classes=classes, guidance=3.0))
        acc = per_class_accuracy(feats.classify(images)[1], classes, 10)
        assert acc["accuracy"] >= 0.9, (model, acc)
    distilled = load_model("digits-cond-dsd8")
    assert distilled.guidance == 3.0 and distilled.distilled_steps == 8 and distilled.model.config.num_classes == 10
