"""The `dsd` command line: one Typer app, one module per command. Without torch installed only `sample` (of an
exported .onnx model) is real; the other commands say they need torch (notorch.py)."""

import signal

import typer

from . import common
from .notorch import add_torch_stubs, have_torch
from .sample import sample

app = typer.Typer(
    name="dsd",
    help="Direct self-distillation of diffusion models: train, distil, sample, evaluate, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def options(debug: bool = typer.Option(False, "--debug", help="Show tracebacks with errors (for bug reports).")) -> None:
    common.DEBUG = debug


app.command()(sample)
if have_torch():
    from .classifier import train_classifier
    from .distill import distill
    from .evaluate import eval_command
    from .export import export
    from .info import info
    from .train import train

    app.command()(train)
    app.command()(info)
    app.command("train-classifier")(train_classifier)
    app.command("eval")(eval_command)
    app.command()(distill)
    app.command()(export)
else:
    add_torch_stubs(app)


def main() -> None:
    # A shell starting `dsd … &` without job control makes SIGINT ignored, and Python then never raises
    # KeyboardInterrupt; a run must still stop cleanly (checkpoint, "resume with …") when asked with SIGINT.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    app()
