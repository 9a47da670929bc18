"""The `dsd` command line: one Typer app, one module per command."""

import typer

from .info import info
from .sample import sample
from .train import train

app = typer.Typer(
    name="dsd",
    help="Direct self-distillation of diffusion models: train, sample, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(train)
app.command()(sample)
app.command()(info)


def main() -> None:
    app()
