"""An exported sampler runs with torch made unimportable: `dsd sample --model m.onnx` in a subprocess whose
`import torch` fails, writing the same images as the torch path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from .onnx_fixtures import STEPS, tiny_export
from .test_cli import run

BLOCK_TORCH = """
import sys
sys.modules["torch"] = None  # any `import torch` (or torch.*) now raises ImportError
from dsd_tui.cli import app
try:
    app(sys.argv[1:])
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m] is not None)
    print("torch modules:", loaded, file=sys.stderr)
"""


def dsd_without_torch(*args):
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH, *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_sample_onnx_without_torch(tmp_path):
    ckpt, report = tiny_export(tmp_path)
    done = dsd_without_torch("sample", "--model", report.path, "--steps", STEPS, "--num", 6, "--seed", 1,
                             "--threads", 1, tmp_path / "o.npz")
    assert done.returncode == 0, done.stderr
    assert "torch modules: []" in done.stderr and "onnxruntime" in done.stdout
    assert run("sample", "--model", ckpt, "--steps", STEPS, "--num", 6, "--seed", 1, tmp_path / "t.npz").exit_code == 0
    ort_images, torch_images = (np.load(tmp_path / f"{n}.npz")["arr_0"].astype(int) for n in "ot")
    assert ort_images.shape == (6, 8, 8, 1) and np.abs(ort_images - torch_images).max() <= 1


def test_torch_commands_say_what_they_need(tmp_path):
    for args in (["train", "--data", "digits", "--out", tmp_path / "r"], ["sample", "--steps", 2, tmp_path / "o.png"]):
        done = dsd_without_torch(*args)
        lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("torch modules")]
        assert done.returncode == 2 and len(lines) == 1 and "needs torch" in lines[0], done.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "o.png").exists()
