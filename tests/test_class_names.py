"""`--class` by name for a model whose data has names (emoji categories): the same images as the id, from the
checkpoint and from its ONNX export (which carries the names in its metadata); an unknown name lists them."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from dsd_core.checkpoint import save_model
from dsd_core.classes import EMOJI_CATEGORIES
from dsd_core.schedule import NoiseSchedule
from dsd_tui.cli import app

from .conftest import tiny_unet
from .test_cli import assert_one_line_error

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _images(path):
    with np.load(path) as f:
        return f["arr_0"]


def test_class_names_select_the_same_images_as_ids_in_torch_and_onnx(tmp_path):
    ckpt = save_model(tmp_path / "c.safetensors", tiny_unet(num_classes=len(EMOJI_CATEGORIES)),
                      NoiseSchedule("linear"), "v", ema=True, provenance={"data": "emoji16:train"})
    onnx_path = tmp_path / "c.onnx"
    result = run("export", "--onnx", "--model", ckpt, "--steps", 2, "--threads", 1, onnx_path)
    assert result.exit_code == 0, result.output
    for model in (ckpt, onnx_path):
        out = {}
        for spec in ("9", "flags", "Flags"):
            path = tmp_path / f"{model.suffix[1:]}-{spec}.npz"
            steps = ["--steps", 2] if model == ckpt else []  # the export samples its own 2 steps
            result = run("sample", "--model", model, *steps, "--num", 3, "--seed", 4, "--threads", 1, "--class",
                         spec, path)
            assert result.exit_code == 0, result.output
            out[spec] = _images(path)
        assert np.array_equal(out["flags"], out["9"]) and np.array_equal(out["Flags"], out["9"])
        error = run("sample", "--model", model, "--num", 1, "--class", "dragons", tmp_path / "x.npz")
        assert_one_line_error(error, "Food & Drink")
        assert not (tmp_path / "x.npz").exists()
