"""A command group that imports a command's module only when that command runs (or shows its own --help), so
`dsd --help` and `dsd sample --model m.onnx` never import torch. `dsd --help` lists the commands from their
one-line summaries, written beside their module names in `dsd_tui.cli.COMMANDS`."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

# click is reached through typer only: typer ≥ 0.29 vendors it (typer._click) and installs no `click`.


@dataclass(frozen=True)
class LazyCommand:
    module: str  # under dsd_tui.cli
    function: str
    summary: str  # the line `dsd --help` shows
    needs_torch: bool = True


def have_torch() -> bool:
    """Whether torch is installed, without importing it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def load(name: str, spec: LazyCommand) -> Any:
    """The real click command: the module imported, its function turned into a command by Typer."""
    if spec.needs_torch and not have_torch():
        from .notorch import needs_torch_command

        function = needs_torch_command(name)
        settings = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
    else:
        function = getattr(importlib.import_module(f"{__package__}.{spec.module}"), spec.function)
        settings = {}
    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    one.command(name, context_settings=settings, help=None if settings == {} else "(needs torch)")(function)
    return typer.main.get_command(one)


class LazyGroup(TyperGroup):
    commands_spec: ClassVar[dict[str, LazyCommand]] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands_spec)

    def get_command(self, ctx: Any, name: str) -> Any:
        """A stand-in carrying the summary: what a listing needs. Running a command goes through resolve_command."""
        spec = self.commands_spec.get(name)
        if spec is None:
            return None
        return TyperCommand(name, short_help=spec.summary, help=spec.summary)

    def resolve_command(self, ctx: Any, args: list[str]):
        name, stand_in, rest = super().resolve_command(ctx, args)
        if stand_in is None or name not in self.commands_spec:
            return name, stand_in, rest
        return name, load(name, self.commands_spec[name]), rest
