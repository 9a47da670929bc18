"""The `dsd` command end to end through Typer's runner: outputs, and one-line errors for bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dsd_tui.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, needle):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.output


def test_sample_default_model_to_npz(tmp_path):
    out = tmp_path / "s.npz"
    result = run("sample", "--steps", 2, "--num", 6, "--seed", 1, out)
    assert result.exit_code == 0, result.output
    arr = np.load(out)["arr_0"]
    assert arr.shape == (6, 8, 8, 1) and arr.dtype == np.uint8
    again = tmp_path / "again.npz"
    run("sample", "--steps", 2, "--num", 6, "--seed", 1, "--batch", 4, again)
    assert np.abs(np.load(again)["arr_0"].astype(int) - arr.astype(int)).max() <= 1


def test_sample_grid_and_folder(tiny_ckpt, tmp_path):
    assert run("sample", "--model", tiny_ckpt, "--steps", 3, "--num", 4, tmp_path / "g.png").exit_code == 0
    assert Image.open(tmp_path / "g.png").size == (140, 140)  # 2×2 tiles of 64 px, 4 px gaps
    assert run("sample", "-m", tiny_ckpt, "-s", 3, "-n", 3, tmp_path / "imgs").exit_code == 0
    assert len(list((tmp_path / "imgs").glob("*.png"))) == 3


def test_info_json(tiny_ckpt):
    result = run("info", tiny_ckpt, "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["prediction"] == "eps" and facts["parameters"] > 0 and len(facts["sha256"]) == 64
    assert run("info", "digits").exit_code == 0


def test_train_then_resume_through_the_cli(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--out", out, "--steps", 3, "--batch", 8, "--channels", 16,
            "--mults", "1,2", "--attention", "", "--checkpoint-every", 2, "--sample-every", 3]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and list((out / "samples").glob("*.png"))
    assert_one_line_error(run("train", "--resume", out), "already finished")


def test_missing_checkpoint(tmp_path):
    assert_one_line_error(run("sample", "--model", tmp_path / "x.safetensors", tmp_path / "o.png"), "not found")


def test_corrupt_checkpoint(tiny_ckpt, tmp_path):
    tiny_ckpt.write_bytes(tiny_ckpt.read_bytes()[:100])
    assert_one_line_error(run("sample", "--model", tiny_ckpt, tmp_path / "o.png"), "not a readable safetensors")
    assert_one_line_error(run("info", tiny_ckpt), "not a readable safetensors")


@pytest.mark.parametrize("steps", [0, -1, 5000])
def test_impossible_step_counts(steps, tmp_path):
    assert_one_line_error(run("sample", "--steps", steps, tmp_path / "o.png"), "step count")
    assert not (tmp_path / "o.png").exists()


def test_data_folder_without_images(tmp_path):
    (tmp_path / "data").mkdir()
    result = run("train", "--data", tmp_path / "data", "--out", tmp_path / "run", "--steps", 1)
    assert_one_line_error(result, "no readable images")


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert_one_line_error(run("sample", "--steps", 1, "--num", 1, blocker / "o.png"), "cannot write")
    assert_one_line_error(run("sample", "--steps", 1, tmp_path / "o.jpg"), "must end in")


def test_cuda_request_without_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert_one_line_error(run("sample", "--device", "cuda", tmp_path / "o.png"), "no CUDA GPU")


def test_sample_picks_the_shipped_distilled_model_by_step_count(tmp_path):
    from dsd_core.builtins import available_builtins

    for steps in (8, 4, 2):  # the v-prediction family is the better one at every step count
        name = f"digits-v-dsd{steps}"
        assert {name, f"digits-dsd{steps}"} <= set(available_builtins())
        result = run("sample", "--steps", steps, "--num", 2, tmp_path / f"s{steps}.npz")
        assert result.exit_code == 0 and f"model {name} (the default)," in result.stdout.replace("\n", " ")
        facts = json.loads(run("info", name, "--json").stdout)
        assert facts["distilled_steps"] == steps and facts["prediction"] == "v"
        assert facts["provenance"]["method"] in ("dsd", "dsd-stage") and facts["provenance"]["base_model"] == "digits-v"
    result = run("sample", "--steps", 3, "--num", 2, tmp_path / "s3.npz")
    assert result.exit_code == 0 and "model digits-v (the default)," in result.stdout.replace("\n", " ")
    result = run("sample", "--num", 2, tmp_path / "bare.npz")  # no --steps either: the best few-step model
    assert result.exit_code == 0 and "model digits-v-dsd8 (the default), 8 steps" in result.stdout.replace("\n", " ")


def test_distill_then_resume_through_the_cli(tiny_ckpt, tmp_path):
    run_dir = tmp_path / "run"
    args = ["distill", "--model", tiny_ckpt, "--schedule", "iterative", "--from", 8, "--to", 2, "--updates", 4,
            "--batch", 4, "--run-dir", run_dir, "--checkpoint-every", 2, "--out", tmp_path / "d.safetensors"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert json.loads(run("info", tmp_path / "d.safetensors", "--json").stdout)["distilled_steps"] == 2
    assert_one_line_error(run(*args), "already holds a run")
    started_with = json.loads((run_dir / "config.json").read_text())["threads"]
    assert started_with == torch.get_num_threads()
    try:  # a resume without --threads takes the run's own count (bit-identical resumes need it)
        torch.set_num_threads(started_with + 1)
        assert_one_line_error(run("distill", "--resume", run_dir), "already finished")
        assert torch.get_num_threads() == started_with
    finally:
        torch.set_num_threads(started_with)
    assert_one_line_error(run("distill", "--resume", tmp_path), "not a run folder")


def test_pd_through_the_cli_reads_the_digits(tiny_ckpt, tmp_path):
    result = run("distill", "--model", tiny_ckpt, "--method", "pd", "--data", "digits", "--from", 8, "--to", 2,
                 "--updates", 4, "--batch", 4, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    prov = json.loads(run("info", tmp_path / "run" / "model.safetensors", "--json").stdout)["provenance"]
    assert prov["method"] == "pd" and prov["data"] == "digits" and prov["nfe_per_update"] == 12


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--schedule", "iterative", "--from", "48", "--to", "8"], "power-of-two"),
        (["--to", "0"], "at least 1"),
        (["--updates", "0"], "at least 1"),
        (["--method", "magic"], "unknown method"),
        (["--weight", "heavy"], "unknown loss weight"),
        (["--method", "dsd+pd", "--schedule", "naive"], "dsd+pd needs"),
        (["--method", "pd", "--data", "/nonexistent/folder"], "/nonexistent/folder"),
    ],
)
def test_distill_bad_settings(args, needle, tmp_path):
    assert_one_line_error(run("distill", "--run-dir", tmp_path / "r", *args), needle)
