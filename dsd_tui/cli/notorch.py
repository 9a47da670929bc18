"""`dsd` without torch installed: only `dsd sample` of an exported `.onnx` model works; the other commands
stay listed and say what they need instead of failing with an ImportError."""

from __future__ import annotations

from typing import Callable

import typer

from dsd_core.errors import DsdError

from .common import user_errors


def needs_torch_command(name: str) -> Callable[[typer.Context], None]:
    def command(ctx: typer.Context) -> None:
        with user_errors():
            raise DsdError(f"dsd {name} needs torch (pip install torch==2.13.0); without it only "
                           "dsd sample --model MODEL.onnx works")

    return command
