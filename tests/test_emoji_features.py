"""The emoji feature extractors: one classifier network for 16 and 32 px with a category and a set head, its
training (on a few made-up images), `dsd eval` scoring emoji with the floor and picking the emoji features by
itself, shape mismatches as one-line errors, and the digits classifier exactly as it was."""

import dataclasses
import json
import math

import pytest
import torch
from typer.testing import CliRunner

import dsd_core.classifier as clf
from dsd_core.checkpoint import save_model
from dsd_core.errors import DsdError
from dsd_core.evaluate import digits_reference, emoji_reference, named_data
from dsd_core.features import CLASSIFIER_FEATURES, ClassifierFeatures, DigitsFeatures
from dsd_core.images import write_samples
from dsd_core.models import UNet
from dsd_core.schedule import NoiseSchedule
from dsd_tui.cli import app

from .conftest import TINY

runner = CliRunner()


def dsd(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("side", [16, 32])
def test_one_network_for_both_sizes_with_two_heads(side):
    model = clf.EmojiClassifier().eval()
    f = model.features(torch.zeros(5, 3, side, side))
    category, kind = model.heads(f)
    assert f.shape == (5, clf.FEATURE_DIM) == (5, 64)
    assert category.shape == (5, 10) and kind.shape == (5, 2)
    assert torch.equal(model(torch.zeros(5, 3, side, side)), category)


def made_up(data: str, split: str, n: int = 48):
    """Images whose category is their colour (red, green, blue) and whose set is a dark frame or none."""
    side = clf.SPECS[data].shape[0]
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    category, kind = torch.randint(0, 3, (n,), generator=g), torch.randint(0, 2, (n,), generator=g)
    x = torch.full((n, 3, side, side), 1.0) - 0.1 * torch.rand(n, 3, side, side, generator=g)
    x[torch.arange(n), category, 4:-4, 4:-4] = -1.0
    x[kind == 1, :, :2] = -1.0
    return x, [category, kind]


@pytest.fixture
def tiny_emoji(monkeypatch):
    monkeypatch.setattr(clf, "labelled", made_up)


def test_training_learns_both_heads(tiny_emoji):
    seen = []
    model, acc = clf.train_classifier(epochs=8, batch=16, data="emoji16", on_step=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (24, 24)
    accuracies = clf.test_accuracies(model, "emoji16")
    assert acc == accuracies["category"] and set(accuracies) == {"category", "set"}
    assert accuracies["category"] > 0.9 and accuracies["set"] > 0.9


def test_train_classifier_command_records_both_heads(tiny_emoji, tmp_path):
    out = tmp_path / "e.safetensors"
    result = dsd("train-classifier", "--data", "emoji16", "--epochs", 2, "--out", out, "--threads", 1)
    assert result.exit_code == 0, result.output
    assert "category" in result.stdout and "set" in result.stdout
    feats = ClassifierFeatures("emoji16", out)
    assert set(feats.meta["test_accuracies"]) == {"category", "set"}
    assert feats.meta["test_accuracy"] == feats.meta["test_accuracies"]["category"]
    assert "--data emoji16" in feats.meta["recipe"]["command"]
    with pytest.raises(DsdError, match="not a digits classifier"):
        DigitsFeatures(out)
    assert_one_line_error(dsd("train-classifier", "--data", "cifar", "--out", tmp_path / "c.safetensors"),
                          "no classifier for data 'cifar'")


def test_digits_classifier_is_unchanged():
    """Features and predictions of the held-out digits, and a short training run, as the code before the emoji
    classifiers gave them."""
    feats, labels = DigitsFeatures().classify(digits_reference().held_out)
    assert feats.shape == (297, 64)
    assert feats[:3].sum(1) == pytest.approx([254.5496044754982, 217.81229396909475, 220.05655647441745], rel=1e-9)
    assert feats.sum() == pytest.approx(73909.65462325048, rel=1e-9)
    assert labels[:10].tolist() == [2, 2, 0, 8, 7, 8, 3, 4, 0, 1]
    model, acc = clf.train_classifier(epochs=1, seed=1)
    assert acc == pytest.approx(0.619528591632843, abs=1e-9)
    assert sum(float(p.detach().double().sum()) for p in model.parameters()) == pytest.approx(82.66896630953056,
                                                                                                 rel=1e-6)


@pytest.mark.parametrize("data", ["emoji16", "emoji"])
def test_shipped_emoji_classifiers_score_what_they_record(data):
    feats = ClassifierFeatures(data)
    recorded = feats.meta["test_accuracies"]
    assert recorded["category"] > 0.75 and recorded["set"] > 0.9  # majority category: 58 %; set: 50 %
    assert clf.test_accuracies(feats.model, data) == pytest.approx(recorded, abs=1.5 / 702)  # within one image
    assert named_data(feats.shape) == data == named_data(feats.shape, f"{data}:train")
    assert CLASSIFIER_FEATURES == tuple(clf.SPECS)
    ref = emoji_reference(data)
    assert ref.images.shape[1:] == feats.shape and len(ref.held_out) == 702


def test_eval_scores_emoji_samples_with_the_floor(tmp_path):
    write_samples(emoji_reference("emoji16").held_out[::30], tmp_path / "s.npz")  # 24 real test emoji
    out = tmp_path / "r.json"
    result = dsd("eval", tmp_path / "s.npz", "--threads", 1, "--json", out)
    assert result.exit_code == 0, result.output
    assert "24 samples are too few" in " ".join(result.stderr.split())
    r = json.loads(out.read_text())
    assert r["reference"] == "emoji16" and r["features"] == "emoji16" and r["n"] == 24  # both chosen by size
    for key in ("fd", "precision", "recall", "density", "coverage"):
        assert math.isfinite(r[key]) and math.isfinite(r["floor"][key])
    assert r["floor"]["n"] == 702 and 0 < r["floor"]["fd"] < r["fd"] and sum(r["class_counts"]) == 24


def test_gray_and_rgb_do_not_mix(tmp_path):
    write_samples(emoji_reference("emoji16").held_out[:12], tmp_path / "rgb.npz")
    assert_one_line_error(dsd("eval", tmp_path / "rgb.npz", "--reference", "digits"),
                          "samples are (16, 16, 3) images but the reference digits is (8, 8, 1)")
    assert_one_line_error(dsd("eval", tmp_path / "rgb.npz", "--features", "digits"),
                          "digits features read (8, 8, 1) images but the reference emoji16 is (16, 16, 3)",
                          "choose --features")
    assert_one_line_error(dsd("eval", "--model", "digits", "--features", "emoji16"),
                          "emoji16 features read (16, 16, 3) images but the reference digits is (8, 8, 1)")
    torch.manual_seed(1)
    rgb = UNet(dataclasses.replace(TINY, image_size=16, in_channels=3))
    ckpt = save_model(tmp_path / "rgb16.safetensors", rgb, NoiseSchedule("linear"), "eps", ema=True,
                      provenance={"data": "emoji16:train"})
    assert_one_line_error(dsd("eval", "--model", ckpt, "--steps", 1, "--num", 10, "--reference", "digits"),
                          "the model makes (16, 16, 3) images but the reference digits is (8, 8, 1)")
    assert_one_line_error(dsd("eval", "--model", ckpt, "--features", "digits"),  # the reference: the model's data
                          "digits features read (8, 8, 1) images but the reference emoji16 is (16, 16, 3)")
