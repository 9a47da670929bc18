"""The `dsd` command line: one Typer app, one module per command."""

import typer

from .classifier import train_classifier
from .distill import distill
from .evaluate import eval_command
from .info import info
from .sample import sample
from .train import train

app = typer.Typer(
    name="dsd",
    help="Direct self-distillation of diffusion models: train, distil, sample, evaluate, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(train)
app.command()(sample)
app.command()(info)
app.command("train-classifier")(train_classifier)
app.command("eval")(eval_command)
app.command()(distill)


def main() -> None:
    app()
