"""Every command that takes a model answers a bad checkpoint with one line, exit code 2 and no output file:
missing, truncated, random bytes, a pickle, a foreign safetensors file, another format version, a training
state instead of a model, a diffusers folder with a bad config."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from dsd_core.checkpoint import save_tensors
from dsd_core.diffusers_io import unet_folder
from dsd_core.errors import DsdError

from .reliability_helpers import assert_one_line_error, dsd, listing


def make_bad(kind: str, tmp, good):
    path = tmp / "bad.safetensors"
    if kind == "missing":
        return tmp / "missing.safetensors", "not found"
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        return path, "not a readable safetensors"
    if kind == "random":
        path.write_bytes(os.urandom(4096))
        return path, "not a readable safetensors"
    if kind == "pickle":
        path = tmp / "bad.pt"
        path.write_bytes(pickle.dumps({"state_dict": {"w": [1.0, 2.0]}}))
        return path, "not a readable safetensors"
    if kind == "foreign":
        save_file({"w": torch.randn(3, 3)}, str(path))
        return path, "not a dsd checkpoint"
    if kind == "version":
        save_tensors(path, {"w": torch.zeros(1)}, {"format_version": 99, "kind": "model"})
        return path, "checkpoint format 99"
    if kind == "state":
        save_tensors(path, {"w": torch.zeros(1)}, {"kind": "train-state"})
        return path, "not a model checkpoint"
    raise AssertionError(kind)


KINDS = ["missing", "truncated", "random", "pickle", "foreign", "version", "state"]
COMMANDS = {
    "sample": lambda m, out: ["sample", "--model", m, "--steps", 2, "--num", 2, out / "o.png"],
    "info": lambda m, out: ["info", m],
    "export": lambda m, out: ["export", "--onnx", "--model", m, "--steps", 2, out / "o.onnx"],
    "distill": lambda m, out: ["distill", "--model", m, "--updates", 1, "--run-dir", out / "run"],
    "eval": lambda m, out: ["eval", "--model", m, "--num", 8, "--json", out / "e.json"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", KINDS)
def test_bad_checkpoints_give_one_line_and_write_nothing(kind, command, tiny_ckpt, tmp_path):
    model, needle = make_bad(kind, tmp_path, tiny_ckpt)
    out = tmp_path / "out"
    out.mkdir()
    assert_one_line_error(dsd(*COMMANDS[command](model, out)), needle)
    assert listing(out) == {}


def test_a_diffusers_folder_with_a_bad_config(tmp_path):
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "config.json").write_text('{"_class_name": "UNet2DModel", "sample_size": ')  # torn JSON
    with pytest.raises(DsdError, match="not a readable diffusers config"):
        unet_folder(folder)
    (folder / "unet" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(DsdError, match="holds a AutoencoderKL"):
        unet_folder(folder)
    # through the CLI, with or without diffusers installed: one line (the bad config, or how to install it)
    out = tmp_path / "out"
    out.mkdir()
    for command in ("info", "sample", "distill"):
        line = assert_one_line_error(dsd(*COMMANDS[command](folder, out)))
        assert "AutoencoderKL" in line or "diffusers" in line
    assert listing(out) == {}
