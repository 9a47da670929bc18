"""onnxruntime is an optional extra ([cpu] or [gpu]): without it, export and .onnx sampling fail before any
work with one line naming the extra, and torch sampling still works."""

from __future__ import annotations

import os
import subprocess
import sys

from .onnx_fixtures import STEPS, tiny_checkpoint

BLOCK_ORT = """
import sys
sys.modules["onnxruntime"] = None  # `import onnxruntime` now raises ImportError
from dsd_tui.cli import app
app(sys.argv[1:])
"""


def dsd_without_onnxruntime(cache, *args):
    env = {**os.environ, "DSD_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", BLOCK_ORT, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False, env=env)


def test_export_and_onnx_sampling_name_the_extra(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    for args, out in ((["export", "--onnx", "--model", ckpt, "--steps", STEPS], tmp_path / "m.onnx"),
                      (["sample", "--model", ckpt, "--backend", "ort", "--num", 2], tmp_path / "o.png")):
        done = dsd_without_onnxruntime(tmp_path / "cache", *args, out)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert "needs onnxruntime" in lines[0] and "dsd-distill[cpu]" in lines[0]
        assert not out.exists() and not (tmp_path / "cache").exists()
    done = dsd_without_onnxruntime(tmp_path / "cache", "sample", "--model", ckpt, "--num", 2, tmp_path / "t.png")
    assert done.returncode == 0 and (tmp_path / "t.png").is_file(), done.stderr
