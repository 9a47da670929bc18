"""Checks before work (issue 14 §5): bad options fail before the first update, with nothing written; settings
that are valid but waste the run (too short for the warm-up or the EMA, too few samples to score) warn first."""

from __future__ import annotations

import json

import pytest

from dsd_core.distill.methods import ema_short_run_message, nfe_text
from dsd_core.distill.runner import Distiller
from dsd_core.evaluate import small_n_message
from dsd_core.train import TrainConfig, short_run_message
from dsd_tui.cli.common import cli_text

from .reliability_helpers import assert_one_line_error, dsd

TINY_RUN = ["--schedule", "naive", "--to", 2, "--updates", 4, "--batch", 4, "--threads", 1]


@pytest.fixture
def no_updates(monkeypatch):
    """Any distillation update fails the test: the errors below must come before the first one."""

    def update(self):
        raise AssertionError("an update ran before the error")

    monkeypatch.setattr(Distiller, "step", update)


def test_a_built_in_model_to_diffusers_fails_before_the_run_starts(tmp_path, no_updates):
    result = dsd("distill", "--model", "digits", "--save-format", "diffusers", "--out", tmp_path / "pipe",
                 "--run-dir", tmp_path / "run", *TINY_RUN)
    assert_one_line_error(result, "needs a diffusers model", "no UNet2DModel equivalent")
    assert list(tmp_path.iterdir()) == []  # no run folder, no events, no pipeline
    assert result.stdout == ""  # not even the header: nothing started


def out_cases(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x").write_text("kept")
    file = tmp_path / "file.safetensors"
    file.write_text("kept")
    return [
        (["--out", folder, "--force"], "is a folder"),
        (["--out", file, "--save-format", "diffusers", "--force"], "is a file"),
        (["--out", file], "already exists"),
        (["--out", folder, "--save-format", "diffusers"], "already exists"),
        (["--out", tmp_path / "missing" / "d.safetensors"], "output folder does not exist"),
        (["--save-format", "onnx", "--out", tmp_path / "d.onnx"], "unknown --save-format"),
    ]


def test_bad_outputs_fail_before_the_run_folder_exists(tiny_ckpt, tmp_path, no_updates):
    for args, needle in out_cases(tmp_path):
        run = tmp_path / "run"
        assert_one_line_error(dsd("distill", "--model", tiny_ckpt, *TINY_RUN, "--run-dir", run, *args), needle)
        assert not run.exists()
    assert (tmp_path / "folder" / "x").read_text() == "kept" and (tmp_path / "file.safetensors").read_text() == "kept"


def test_pd_without_data_fails_before_the_run_folder_exists(tiny_ckpt, tmp_path, no_updates):
    # the tiny checkpoint does not say what it was trained on, so PD has no data unless --data names it
    result = dsd("distill", "--model", tiny_ckpt, "--method", "pd", *TINY_RUN, "--run-dir", tmp_path / "run")
    assert_one_line_error(result, "pass --data")
    assert not (tmp_path / "run").exists()


def test_a_train_run_inside_the_warm_up_warns_first(tmp_path):
    assert short_run_message(TrainConfig(steps=200)) is None
    said = short_run_message(TrainConfig(steps=50))
    assert "50 steps end inside the 200-step learning-rate warm-up" in said
    result = dsd("train", "--data", "digits", "--out", tmp_path / "run", "--steps", 2, "--batch", 4, "--channels", 16,
                 "--mults", "1,2", "--attention", "", "--threads", 1)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["warning: " + short_run_message(TrainConfig(steps=2))]


def test_a_distillation_shorter_than_its_ema_warns_first(tiny_ckpt, tmp_path):
    assert ema_short_run_message(1000, 0.999) is None and ema_short_run_message(9, 0.9) is not None
    assert "(1000 updates at --ema 0.999): 90 % of the saved weights" in cli_text(ema_short_run_message(100, 0.999))
    result = dsd("distill", "--model", tiny_ckpt, *TINY_RUN, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["warning: " + cli_text(ema_short_run_message(4, 0.999))]
    quiet = dsd("distill", "--model", tiny_ckpt, *TINY_RUN, "--ema", 0.5, "--run-dir", tmp_path / "run2")
    assert quiet.exit_code == 0 and quiet.stderr.strip() == ""


def test_the_distill_header_names_the_cost_of_the_methods_in_the_run(tiny_ckpt, tmp_path):
    assert nfe_text("dsd", ["dsd", "dsd"]) == "DSD 2 NFE per trajectory and update"
    assert nfe_text("tsd", ["dsd"], guided_cost=2) == "TSD 4 NFE per trajectory and update with guidance"
    assert nfe_text("dsd+pd", ["dsd", "pd"]) == "DSD 2 NFE per trajectory and update, PD 3 NFE per image and update"
    for method, says, never in (("dsd", "DSD 2 NFE", "PD"), ("pd", "PD 3 NFE per image", "DSD")):
        result = dsd("distill", "--model", tiny_ckpt, "--method", method, "--data", "digits", *TINY_RUN,
                     "--run-dir", tmp_path / method)
        assert result.exit_code == 0, result.output
        header = result.stdout.splitlines()[0]
        cost = header.split("updates of batch")[1].split("), on ")[0]
        assert says in cost and never not in cost, header


def test_too_few_samples_to_score_warn_before_sampling(tmp_path):
    assert small_n_message(200, 64) is None and small_n_message(199, 64) is not None
    assert small_n_message(1000, 2048) is not None  # 2048-d Inception features need 3·D samples
    result = dsd("eval", "--model", "digits", "--steps", 2, "--num", 10, "--threads", 1, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    first = [line for line in result.stderr.splitlines() if line.strip()][0]
    assert first == "warning: " + small_n_message(10, 64)
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 10
