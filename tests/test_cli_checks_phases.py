"""No silent phases (issue 14 §6): the engines name every long step between updates, the CLI shows them on the
bar, every command's header says where it runs with how many threads, and `eval --json -` keeps stdout JSON."""

from __future__ import annotations

import io
import json
from contextlib import contextmanager

import pytest
import torch
from rich.console import Console
from rich.progress import Progress

from dsd_core.checkpoint import load_model
from dsd_core.classifier import train_classifier
from dsd_core.data import load_digits
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.runner import Distiller
from dsd_core.train import TrainConfig, Trainer
from dsd_tui.cli.train import bar_phases

from .conftest import TINY
from .reliability_helpers import dsd

CPU = torch.device("cpu")


class Timeline:
    """Records phases (start, end) and progress calls in the order they happen."""

    def __init__(self):
        self.seen: list[tuple[str, object]] = []

    @contextmanager
    def phase(self, name: str):
        self.seen.append(("start", name))
        yield
        self.seen.append(("end", name))

    def progress(self, step, _):
        self.seen.append(("progress", step))

    def phases(self) -> list[str]:
        return [name for kind, name in self.seen if kind == "start"]


def test_training_names_its_steps_between_updates(tmp_path):
    cfg = TrainConfig(steps=4, batch=8, warmup=1, sample_every=2, sample_steps=2, checkpoint_every=4)
    timeline = Timeline()
    Trainer(load_digits()[0][:64], TINY, cfg, tmp_path, CPU).run_loop(timeline.progress, phase=timeline.phase)
    assert timeline.phases() == ["sampling a preview grid", "sampling a preview grid", "saving a checkpoint",
                                 "saving the EMA model"]
    assert timeline.seen[-2:] == [("start", "saving the EMA model"), ("end", "saving the EMA model")]


def test_distillation_shows_its_warm_up_before_any_loss(tiny_ckpt, tmp_path):
    cfg = DistillConfig(schedule="iterative", n_from=8, n_to=2, updates=4, batch=4, sample_every=100,
                        checkpoint_every=100)
    timeline = Timeline()
    Distiller(load_model(tiny_ckpt), cfg, tmp_path, CPU).run_loop(timeline.progress, phase=timeline.phase)
    assert timeline.phases() == ["sampling a preview grid", "filling the trajectory pool",
                                 "checking agreement at 4 steps", "saving the best 4-step model",
                                 "saving the 4-step model", "filling the trajectory pool",
                                 "checking agreement at 2 steps", "saving the best 2-step model",
                                 "sampling a preview grid", "saving a checkpoint", "saving the distilled model"]
    first_update = timeline.seen.index(("progress", 1))
    assert timeline.seen[first_update - 1] == ("end", "filling the trajectory pool")  # no loss during the warm-up


def test_the_bar_names_a_phase_while_it_runs():
    bar = Progress(console=Console(file=io.StringIO(), force_terminal=True), auto_refresh=False)
    task = bar.add_task("train", total=10)
    show = bar_phases(bar, task)
    with show("saving a checkpoint"):
        assert bar.tasks[0].description == "train: saving a checkpoint"
    assert bar.tasks[0].description == "train"
    with pytest.raises(RuntimeError), show("sampling a preview grid"):
        raise RuntimeError("the phase failed")
    assert bar.tasks[0].description == "train"


def test_classifier_training_reports_every_step():
    seen = []
    train_classifier(epochs=1, seed=0, on_step=lambda done, total: seen.append((done, total)))
    per_epoch = -(-len(load_digits("train")[0]) // 64)
    assert seen == [(i, per_epoch) for i in range(1, per_epoch + 1)]


@pytest.fixture
def commands(tmp_path, tiny_ckpt):
    return {
        "train": ["train", "--data", "digits", "--out", tmp_path / "t", "--steps", 1, "--batch", 4, "--channels", 16,
                  "--mults", "1,2", "--attention", ""],
        "distill": ["distill", "--model", tiny_ckpt, "--schedule", "naive", "--to", 2, "--updates", 1, "--batch", 2,
                    "--run-dir", tmp_path / "d"],
        "eval": ["eval", "--model", tiny_ckpt, "--steps", 1, "--num", 10],
        "train-classifier": ["train-classifier", "--out", tmp_path / "c.safetensors", "--epochs", 1],
        "export": ["export", "--onnx", "--model", tiny_ckpt, "--steps", 2, tmp_path / "m.onnx"],
    }


@pytest.mark.parametrize("command", ["train", "distill", "eval", "train-classifier", "export"])
def test_every_header_says_where_it_runs_and_on_how_many_threads(commands, command):
    if command == "export":
        pytest.importorskip("onnxruntime")
    result = dsd(*commands[command], "--threads", 1)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # rich wraps lines longer than the console
    at = text.find("on cpu, 1 thread of ")
    assert at >= 0 and " CPUs" in text[at : at + 30], result.stdout
    assert "wrote" not in text[:at] and "samples vs" not in text[:at]  # in the header, before any result


def test_eval_json_to_stdout_holds_the_json_alone(tmp_path):
    result = dsd("eval", "--model", "digits", "--steps", 2, "--num", 20, "--threads", 1, "--json", "-")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["n"] == 20 and scores["fd_se"] > 0 and scores["floor"]["fd_se"] > 0
    assert "real floor" in result.stderr and "± after FD" in result.stderr and "evaluating digits" in result.stderr
