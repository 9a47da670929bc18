"""`--sampler` on `dsd sample` and `dsd eval`: the solvers through the CLI, what a distilled model says, and
one-line errors that write nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dsd_tui.cli import app

from .onnx_fixtures import tiny_checkpoint
from .test_cli import assert_one_line_error

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def distilled(tmp_path):
    return tiny_checkpoint(tmp_path / "d3.safetensors", prediction="v", distilled_steps=3)


def test_sample_with_each_solver(tiny_ckpt, tmp_path):
    images = {}
    for sampler, label in [("ddim", "DDIM"), ("dpm++2m", "DPM-Solver++(2M)"), ("dpm++3m", "DPM-Solver++(3M)"),
                           ("unipc", "UniPC (bh2)")]:
        result = run("sample", "-m", tiny_ckpt, "-s", 5, "-n", 4, "--sampler", sampler, tmp_path / f"{sampler}.npz")
        assert result.exit_code == 0, result.output
        assert f"5 steps of {label}," in result.stdout.replace("\n", " ") and "note:" not in result.output
        images[sampler] = np.load(tmp_path / f"{sampler}.npz")["arr_0"].astype(int)
    assert all(np.abs(images[s] - images["ddim"]).max() > 0 for s in ("dpm++2m", "dpm++3m", "unipc"))
    assert np.abs(images["dpm++3m"] - images["dpm++2m"]).max() > 0  # 3M is third order at step 3 of 5


def test_a_distilled_model_keeps_ddim_and_says_so_when_asked_for_another(distilled, tmp_path):
    plain = run("sample", "-m", distilled, "-n", 2, tmp_path / "a.npz")
    assert plain.exit_code == 0 and "3 steps of DDIM," in plain.stdout and "note:" not in plain.output
    other = run("sample", "-m", distilled, "-n", 2, "--sampler", "unipc", tmp_path / "b.npz")
    assert other.exit_code == 0, other.output
    note = " ".join(other.stderr.split())
    assert "was distilled for 3-step DDIM, its default sampler; sampling it with UniPC (bh2) as asked" in note
    assert "3 steps of UniPC (bh2)," in other.stdout.replace("\n", " ")


@pytest.mark.parametrize("command", [("sample",), ("sample", "--backend", "ort"), ("eval",)])
def test_an_unknown_sampler_is_a_one_line_error_and_writes_nothing(command, tiny_ckpt, tmp_path):
    out = tmp_path / "o.npz"
    args = [*command, "--model", tiny_ckpt, "--sampler", "euler", "--num", 20]
    result = run(*args, "--json", out) if command == ("eval",) else run(*args, out)
    assert_one_line_error(result, "unknown sampler 'euler'; choose one of ddim, dpm++2m, dpm++3m, unipc")
    assert not out.exists()


def test_eval_with_a_solver_counts_one_evaluation_per_step(distilled, tmp_path):
    out = tmp_path / "r.json"
    result = run("eval", "--model", distilled, "--steps", 4, "--num", 20, "--sampler", "dpm++3m", "--json", out)
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    assert r["sampler"] == "dpm++3m" and r["steps"] == 4 and r["nfe"] == 4
    said = " ".join(result.output.split())
    assert "at 4 steps of dpm++3m" in said and "steps 4 (dpm++3m), NFE per sample 4" in said
    assert "distilled for 3-step DDIM" in said
