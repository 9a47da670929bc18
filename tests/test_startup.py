"""The interactive path stays light: `dsd --help` and `dsd sample` of an .onnx model never import torch, even
with torch installed, and each command module is imported only when its command runs (start-up times are in
docs/benchmarks.md, "Start-up")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .onnx_fixtures import STEPS, tiny_export

REPORT_MODULES = """
import json, sys
from dsd_tui.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "diffusers", "onnx", "textual"))
cli = sorted(m for m in sys.modules if m.startswith("dsd_tui.cli."))
print(json.dumps({"code": code, "heavy": heavy, "cli": cli}), file=sys.stderr)
"""


def modules_after(*args) -> dict:
    """Run `dsd ARGS` in a fresh interpreter (torch installed and importable) and report what it imported."""
    done = subprocess.run([sys.executable, "-c", REPORT_MODULES, *map(str, args)], capture_output=True, text=True,
                          timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_help_imports_no_command_module():
    seen = modules_after("--help")
    assert seen["code"] == 0 and seen["heavy"] == []
    assert seen["cli"] == ["dsd_tui.cli.common", "dsd_tui.cli.lazy"]


def test_onnx_sampling_never_imports_torch(tmp_path):
    pytest.importorskip("torch")  # the point: torch is installed, and still not imported
    _, report = tiny_export(tmp_path)
    seen = modules_after("sample", "--model", report.path, "--steps", STEPS, "--num", 4, tmp_path / "o.png")
    assert seen["code"] in (0, None) and (tmp_path / "o.png").is_file()
    assert seen["heavy"] == [], "the .onnx sampling path imported " + ", ".join(seen["heavy"])
    assert "dsd_tui.cli.distill" not in seen["cli"] and "dsd_tui.cli.sample" in seen["cli"]


@pytest.mark.parametrize("command", ["train", "info", "train-classifier", "eval", "sample", "distill", "export"])
def test_every_command_loads_and_shows_its_help(command):
    from typer.testing import CliRunner

    from dsd_tui.cli import app

    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"dsd {command}" in result.output and "--help" in result.output


def test_the_terminal_app_never_imports_torch():
    """The app, every screen and widget: torch stays out (runs and sampling go through subprocesses and ONNX)."""
    code = ("import importlib, pkgutil, sys, dsd_tui.app, dsd_tui.tui\n"
            "for m in pkgutil.walk_packages(dsd_tui.tui.__path__, 'dsd_tui.tui.'): importlib.import_module(m.name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
