"""The `dsd` command line: one Typer app, one module per command, each imported only when its command runs
(lazy.py), so the interactive path starts fast. Without torch installed only `sample` (of an exported .onnx
model) is real; the other commands say they need torch (notorch.py)."""

import signal

import typer

from . import common
from .lazy import LazyCommand, LazyGroup

COMMANDS = {
    "train": LazyCommand("train", "train", "Train a diffusion UNet from scratch (resumable)."),
    "info": LazyCommand("info", "info", "Show a model's architecture, parameters, schedule and provenance."),
    "train-classifier": LazyCommand("classifier", "train_classifier",
                                    "Train a domain classifier (digits, emoji) whose features dsd eval uses."),
    "eval": LazyCommand("evaluate", "eval_command",
                        "Score samples or a model: FD, precision/recall, density/coverage, with the data's floor."),
    "sample": LazyCommand("sample", "sample", "Sample images with DDIM (torch, or onnxruntime for an .onnx model).",
                          needs_torch=False),
    "distill": LazyCommand("distill", "distill", "Distil a model into fewer sampling steps (DSD, TSD, PD, DSD+PD)."),
    "export": LazyCommand("export", "export", "Export the few-step sampler (or the denoiser) to ONNX, checked."),
}


class DsdGroup(LazyGroup):
    commands_spec = COMMANDS


app = typer.Typer(
    name="dsd",
    cls=DsdGroup,
    help="Direct self-distillation of diffusion models: train, distil, sample, evaluate, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks with errors (for bug reports)."),
) -> None:
    common.DEBUG = debug


def main() -> None:
    # A shell starting `dsd … &` without job control makes SIGINT ignored, and Python then never raises
    # KeyboardInterrupt; a run must still stop cleanly (checkpoint, "resume with …") when asked with SIGINT.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    app()
