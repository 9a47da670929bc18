"""What every command shares: one-line errors with a non-zero exit, progress bars, device and threads.
Torch-free at import (see `setup_device`)."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from dsd_core.errors import DsdError

if TYPE_CHECKING:
    import torch

console = Console()
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a DsdError into `error: …` on stderr and exit code 2; Ctrl-C into exit code 130."""
    try:
        yield
    except DsdError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def setup_device(device: str | None, threads: int | None) -> torch.device:
    # torch is imported here, not at the top: `dsd sample` of an .onnx model runs without torch installed
    import torch

    from dsd_core.device import pick_device

    if threads is not None:
        if threads < 1:
            raise DsdError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    return pick_device(device)


def progress_bar(*extra: TextColumn) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        disable=not sys.stderr.isatty(),
    )


DeviceOption = typer.Option(None, "--device", help="auto (CUDA if available), cpu, cuda or cuda:N.")
ThreadsOption = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's choice).")
