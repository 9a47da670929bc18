"""README's plain-onnxruntime block (noise, run, uint8 rounding) reproduces `dsd sample` of the same .onnx file
exactly, so a user without dsd gets the same images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .onnx_fixtures import tiny_export
from .test_cli import run

ROOT = Path(__file__).resolve().parents[1]


def readme_onnx_block() -> str:
    blocks = (ROOT / "README.md").read_text().split("```python\n")[1:]
    return next(b.split("\n```")[0] for b in blocks if "ort.InferenceSession" in b)


def test_readme_block_equals_dsd_sample(tmp_path):
    _, report = tiny_export(tmp_path, name="m8")  # 1×8×8, like the block's noise shape
    assert run("sample", "--model", report.path, "--num", 64, "--seed", 0, tmp_path / "dsd.npz").exit_code == 0
    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        scope: dict = {}
        exec(compile(readme_onnx_block(), "README.md", "exec"), scope)
    finally:
        os.chdir(here)
    ours = np.load(tmp_path / "dsd.npz")["arr_0"]
    assert scope["u8"].dtype == np.uint8 and scope["u8"].shape == ours.shape == (64, 8, 8, 1)
    np.testing.assert_array_equal(scope["u8"], ours)
