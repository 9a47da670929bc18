"""`dsd` without torch installed: only `dsd sample` of an exported `.onnx` model works; the other commands
stay listed and say what they need instead of failing with an ImportError."""

from __future__ import annotations

import typer

from dsd_core.errors import DsdError

from .common import user_errors

TORCH_COMMANDS = ("train", "info", "train-classifier", "eval", "distill", "export")


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _needs_torch(name: str):
    def command(ctx: typer.Context) -> None:
        with user_errors():
            raise DsdError(f"dsd {name} needs torch (pip install torch==2.13.0); without it only "
                           "dsd sample --model MODEL.onnx works")

    return command


def add_torch_stubs(app: typer.Typer) -> None:
    settings = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
    for name in TORCH_COMMANDS:
        app.command(name, context_settings=settings, help="(needs torch)")(_needs_torch(name))
