"""Bad settings and faults through the `dsd` command line: impossible step counts, model/data mismatches,
junk in a data folder, unwritable and full disks, run folders of another version, wrong classes and guidance,
endless NaNs, overwriting without --force, and --debug. Each: one line, a non-zero exit, nothing half-written."""

from __future__ import annotations

import dataclasses
import errno
import importlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from dsd_core import atomic
from dsd_core.checkpoint import save_model
from dsd_core.models import UNet
from dsd_core.schedule import NoiseSchedule

from .conftest import TINY
from .reliability_helpers import assert_one_line_error, dsd, listing

# --ema 0.5: runs this short would otherwise warn that the EMA keeps the undistilled weights (a second stderr line)
DISTILL = ["--schedule", "iterative", "--from", 8, "--to", 2, "--updates", 4, "--batch", 4, "--ema", 0.5,
           "--threads", 1]
TRAIN = ["--steps", 2, "--batch", 4, "--channels", 16, "--mults", "1,2", "--attention", "", "--threads", 1]


@pytest.fixture
def cond_ckpt(tmp_path):
    torch.manual_seed(2)
    model = UNet(dataclasses.replace(TINY, num_classes=3))
    return save_model(tmp_path / "cond.safetensors", model, NoiseSchedule("linear"), "eps", ema=True)


@pytest.mark.parametrize("args, needle", [
    (["sample", "--steps", 0], "step count"),
    (["sample", "--steps", -3], "step count"),
    (["sample", "--steps", 1001], "step count"),
    (["export", "--onnx", "--steps", 0], "step count"),
    (["export", "--onnx", "--steps", 5000], "step count"),
    (["distill", "--to", 0], "at least 1"),
    (["distill", "--to", -2], "at least 1"),
    (["distill", "--from", 2048, "--to", 8], "2048"),
    (["distill", "--schedule", "iterative", "--from", 12, "--to", 4], "power-of-two"),
    (["eval", "--model", "digits", "--steps", 0, "--num", 16], "step count"),
])
def test_impossible_step_counts(args, needle, tmp_path):
    out = {"sample": [tmp_path / "o.png"], "export": [tmp_path / "o.onnx"], "distill": ["--run-dir", tmp_path / "r"],
           "eval": []}[args[0]]
    assert_one_line_error(dsd(*args, *out), needle)
    assert listing(tmp_path) == {}


def rgb_folder(path, n=3, size=16):
    path.mkdir()
    for i in range(n):
        Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8), "RGB").save(path / f"{i}.png")
    return path


def test_data_that_does_not_fit_the_model(tiny_ckpt, tmp_path):
    data = rgb_folder(tmp_path / "rgb")
    result = dsd("distill", "--model", tiny_ckpt, "--method", "pd", "--data", data, *DISTILL,
                 "--run-dir", tmp_path / "r")
    assert_one_line_error(result, "(3, 16, 16) images but the model makes (1, 8, 8)")
    assert not (tmp_path / "r").exists()


def test_junk_in_a_data_folder_is_skipped_with_one_line_warnings(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8), 60 * i, np.uint8), "L").save(data / f"{i}.png")
    (data / "broken.png").write_bytes(b"\x89PNG but not really")
    (data / "notes.txt").write_text("not an image")
    result = dsd("train", "--data", data, "--out", tmp_path / "run", *TRAIN)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(w.startswith("warning:") for w in warnings), result.stderr  # one line each; also: 2 steps are few
    assert [w for w in warnings if "notes.txt" in w or "broken.png" in w] == warnings[:2]
    assert "notes.txt" in result.stderr and "broken.png" in result.stderr and "Traceback" not in result.output
    for name in ("0.png", "1.png"):
        (data / name).unlink()
    result = dsd("train", "--data", data, "--out", tmp_path / "run2", *TRAIN)  # nothing left: the same, then an error
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and [line.split(":")[0] for line in lines] == ["warning", "warning", "error"]
    assert "no readable images" in lines[-1] and not (tmp_path / "run2").exists()


def test_unwritable_outputs(tiny_ckpt, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    before = listing(tmp_path)
    assert_one_line_error(dsd("distill", "--model", tiny_ckpt, *DISTILL, "--run-dir", blocker / "r"), "cannot create")
    assert_one_line_error(dsd("export", "--onnx", "--model", tiny_ckpt, "--steps", 2, blocker / "m.onnx"),
                          "not a folder")
    assert_one_line_error(dsd("train", "--data", "digits", "--out", blocker / "r", *TRAIN), "cannot create")
    assert_one_line_error(dsd("sample", "--model", tiny_ckpt, "--steps", 1, blocker / "x" / "o.npz"), "cannot write")
    assert listing(tmp_path) == before


class FullDisk:
    """`os` for dsd_core.atomic whose files take half of what is written, then fail with ENOSPC."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fdopen(fd, mode):
        f = os.fdopen(fd, mode)

        def write(data):
            f.raw.write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        f.write = write
        return f


def test_a_full_disk_leaves_the_old_file_and_no_temp_file(tiny_ckpt, tmp_path, monkeypatch):
    out = tmp_path / "o.npz"
    assert dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 2, out).exit_code == 0
    before = listing(tmp_path)
    monkeypatch.setattr(atomic, "os", FullDisk())
    result = dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 3, "--force", out)
    assert_one_line_error(result, "No space left on device", "free some disk space")
    assert listing(tmp_path) == before  # the old samples, byte for byte; no .tmp sibling


def test_a_full_disk_mid_run_keeps_the_last_checkpoint(tiny_ckpt, tmp_path, monkeypatch):
    run = tmp_path / "run"
    args = ["distill", "--model", tiny_ckpt, *DISTILL, "--checkpoint-every", 2, "--run-dir", run]
    real = atomic.atomic_write_bytes
    calls = {"state": 0}

    def fill_up(path, data):
        if path.name == "state.safetensors":
            calls["state"] += 1
            if calls["state"] == 2:  # the second checkpoint finds the disk full
                monkeypatch.setattr(atomic, "os", FullDisk())
        return real(path, data)

    monkeypatch.setattr("dsd_core.checkpoint.atomic_write_bytes", fill_up)
    assert_one_line_error(dsd(*args), "state.safetensors", "No space left on device")
    monkeypatch.undo()
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert not (run / "model.safetensors").exists()
    result = dsd("distill", "--resume", run, "--threads", 1)  # space freed: resumes from update 2
    assert result.exit_code == 0, result.output
    resumes = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if '"resume"' in line]
    assert [e["update"] for e in resumes] == [2]


@pytest.mark.parametrize("command", ["distill", "train"])
def test_a_run_folder_of_another_version(command, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"command": command, "version": "0.0.1", "distill": {}, "train": {}}))
    assert_one_line_error(dsd(command, "--resume", run), "written by dsd 0.0.1", "resume it with that version")
    (run / "config.json").write_text(json.dumps({"command": command}))
    assert_one_line_error(dsd(command, "--resume", run), "unknown version")
    (run / "config.json").write_text("{torn")
    assert_one_line_error(dsd(command, "--resume", run), "corrupt")
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_a_class_out_of_range_and_guidance_without_classes(tiny_ckpt, cond_ckpt, tmp_path):
    assert_one_line_error(dsd("sample", "--model", cond_ckpt, "--steps", 2, "--class", 3, tmp_path / "o.png"),
                          "class 3 is out of range", "0 … 2")
    assert_one_line_error(dsd("sample", "--model", tiny_ckpt, "--steps", 2, "--class", 1, tmp_path / "o.png"),
                          "--class needs a class-conditional model")
    assert_one_line_error(dsd("sample", "--model", tiny_ckpt, "--steps", 2, "--guidance", 3, tmp_path / "o.png"),
                          "--guidance needs a class-conditional model")
    assert_one_line_error(dsd("distill", "--model", tiny_ckpt, *DISTILL, "--guidance", 3, "--run-dir", tmp_path / "r"),
                          "--guidance needs a class-conditional model")
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "r").exists()


def test_endless_nans_stop_with_one_line_and_no_model(tiny_ckpt, tmp_path, nan_dsd_loss):
    run = tmp_path / "run"
    result = dsd("distill", "--model", tiny_ckpt, *DISTILL, "--updates", 40, "--run-dir", run)
    assert_one_line_error(result, "non-finite losses in a row", "lower --lr")
    assert not (run / "model.safetensors").exists()


def test_outputs_are_not_overwritten_without_force(tiny_ckpt, tmp_path):
    png, onnx, out = tmp_path / "o.png", tmp_path / "m.onnx", tmp_path / "d.safetensors"
    for path in (png, onnx, out):
        path.write_bytes(b"precious")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    before = listing(tmp_path)
    assert_one_line_error(dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 1, png),
                          "already exists", "--force")
    assert_one_line_error(dsd("export", "--onnx", "--model", tiny_ckpt, "--steps", 1, onnx),
                          "already exists", "--force")
    assert_one_line_error(dsd("distill", "--model", tiny_ckpt, *DISTILL, "--run-dir", tmp_path / "d", "--out", out),
                          "already exists", "--force")
    assert_one_line_error(dsd("train", "--data", "digits", "--out", tmp_path / "run", *TRAIN), "already holds a run")
    assert listing(tmp_path) == before
    assert dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 1, "--force", png).exit_code == 0
    assert Image.open(png).size[0] > 0


def test_debug_shows_the_traceback_and_bugs_still_get_one_line(tmp_path, monkeypatch):
    result = dsd("--debug", "info", tmp_path / "missing.safetensors")
    assert result.exit_code == 2 and "Traceback" in result.stderr and "error: checkpoint not found" in result.stderr

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug in dsd")

    monkeypatch.setattr(importlib.import_module("dsd_tui.cli.info"), "load_model", bug)  # imported lazily by dsd
    assert_one_line_error(dsd("info", "digits"), "internal error ZeroDivisionError: a bug in dsd", "--debug", code=1)
    result = dsd("--debug", "info", "digits")
    assert result.exit_code == 1 and isinstance(result.exception, ZeroDivisionError)
