"""What every command shares: one-line errors with a non-zero exit, progress bars, device and threads.
Torch-free at import (see `setup_device`)."""

from __future__ import annotations

import contextlib
import sys
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager, Iterator

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from dsd_core.checks import check_threads
from dsd_core.errors import DsdError, render
from dsd_core.text import safe_text

if TYPE_CHECKING:
    import torch

# Piped output (a log file, `| tee`) is not wrapped at 80 columns: lines stay whole for grep and for parsers
# (soft wrap), and tables get 200 columns.
PIPE_WIDTH = 200


def _console(stream, **kwargs) -> Console:
    tty = stream.isatty()
    return Console(width=None if tty else PIPE_WIDTH, soft_wrap=not tty, **kwargs)


console = _console(sys.stdout)
err_console = _console(sys.stderr, stderr=True)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_INTERNAL_ERROR = 1
DEBUG = False  # `dsd --debug …`: tracebacks as well as the one-line errors

# The engine names a setting by its config field (`OptionError`); the CLI says the option: `--` and the field
# with dashes, except for these.
FLAG_OF_FIELD = {"ema_decay": "--ema", "n_from": "--from", "n_to": "--to", "compile": "--compile"}


def flag(field: str) -> str:
    """The option of a config field: `n_to` → `--to`, `sample_every` → `--sample-every`."""
    return FLAG_OF_FIELD.get(field, "--" + field.replace("_", "-"))


def cli_text(message: object) -> str:
    """An error or warning as the CLI says it: settings named by their options (`--guidance`, not `guidance`)."""
    return render(message, flag)


def say(label: str, style: str, message: object = "") -> None:
    """One line on stderr, `label: message`: the message as plain text (no Rich markup or emoji codes), its
    control characters made visible (`safe_text`), since it may quote a file name, metadata or a log."""
    line = Text.assemble((label, style), (f": {safe_text(message)}" if str(message) else ""))
    err_console.print(line, highlight=False, soft_wrap=True, emoji=False)


def tell(message: object) -> None:
    """A line of a command's report on stdout as plain text: it names files, models and runs, whose names may
    hold Rich markup or control characters (`safe_text`)."""
    console.print(Text(safe_text(message)), highlight=False, soft_wrap=True, emoji=False)


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings (e.g. a skipped unreadable image) as `warning: …`, without source lines."""
    say("warning", "yellow", cli_text(message))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a DsdError into `error: …` on stderr and exit code 2; Ctrl-C into exit code 130; a bug into one
    line and exit code 1. `--debug` adds the traceback."""
    with warnings.catch_warnings():  # restores the filters and showwarning on the way out
        warnings.simplefilter("always", UserWarning)  # dsd's own warnings, each time (not once per process)
        if not DEBUG:
            warnings.showwarning = one_line_warning
        try:
            yield
        except DsdError as exc:
            if DEBUG:
                traceback.print_exc()
            say("error", "bold red", cli_text(exc))
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt as exc:
            say("interrupted", "yellow", exc)  # how to resume, when the run could checkpoint first
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if DEBUG:
                raise
            what = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            say("error", "bold red", f"internal error {type(exc).__name__}: {what} (dsd --debug … shows the "
                "traceback; please report it)")
            raise typer.Exit(EXIT_INTERNAL_ERROR) from None


def config_from_options(config_class, options: dict, option_of_field: dict[str, str]):
    """A config dataclass from a command's options, field by field: the option of a field's own name, or the
    one `option_of_field` names; fields without an option keep their default (tests/test_cli_options.py
    checks that every option of train and distill lands in a field or is known not to be one)."""
    import dataclasses

    values = {}
    for field in dataclasses.fields(config_class):
        name = option_of_field.get(field.name, field.name)
        if name in options:
            values[field.name] = options[name]
    return config_class(**values)


def refuse_overwrite(out: Path, force: bool) -> None:
    """Fail before the work, not after: an existing file (or a folder with files) is replaced only with --force."""
    if force or not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    raise DsdError(f"{out} already exists; pass --force to replace it, or choose another name")


ForceOption = typer.Option(False, "--force", help="Replace OUT if it exists.")


def run_threads(threads: int | None, saved: dict | None) -> int | None:
    """--threads as given; when resuming (`saved`: the run's config) without it, the count the run started
    with, since on the CPU a resume ends bit-identical only with the same number of threads."""
    if threads is not None or saved is None:
        return threads
    return saved.get("threads")


def setup_device(device: str | None, threads: int | None) -> torch.device:
    """Pick the device and set torch's CPU threads: `threads` as given, else `dsd_core.threads.default_threads`.
    Every command's header shows the result (`compute_label`)."""
    # torch is imported here, not at the top: `dsd sample` of an .onnx model runs without torch installed
    import torch

    from dsd_core.device import pick_device
    from dsd_core.threads import default_threads

    check_threads(threads)
    if threads is not None:
        torch.set_num_threads(threads)
    else:
        torch.set_num_threads(default_threads(torch.get_num_threads()))
    return pick_device(device)


def compute_label(device: object) -> str:
    """Where the work runs, for header lines: e.g. `cpu, 1 thread of 2 CPUs` or `cuda:0 (1 CPU thread)`."""
    import torch

    from dsd_core.threads import usable_cpus

    n = torch.get_num_threads()
    threads = f"{n} thread{'s' if n != 1 else ''}"
    if str(device).startswith("cuda"):
        return f"{device} ({threads} on the CPU)"
    return f"{device}, {threads} of {usable_cpus()} CPUs"


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


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """A phase without a count (loading, building features, exporting): a spinner with its name on a terminal,
    one `name…` line on stderr when piped, so no long step is silent."""
    if err_console.is_terminal:
        with err_console.status(Text(safe_text(name))):
            yield
    else:
        err_console.print(Text(safe_text(name) + "…"), highlight=False, emoji=False)
        yield


def bar_phases(bar: Progress, task: TaskID) -> Callable[[str], ContextManager]:
    """`phase(name)` for steps that run while a bar waits (a preview grid, a checkpoint, the final save): the
    bar's description names the step until it ends, and the elapsed time keeps ticking. Piped, the bar is
    hidden, and so are these: a log then holds the command's own lines only (events.jsonl records the steps)."""

    @contextlib.contextmanager
    def show(name: str) -> Iterator[None]:
        before = next(t.description for t in bar.tasks if t.id == task)
        bar.update(task, description=f"{before}: {name}")
        try:
            yield
        finally:
            bar.update(task, description=before)

    return show


DeviceOption = typer.Option(None, "--device", help="auto (CUDA if available), cpu, cuda or cuda:N.")
ThreadsOption = typer.Option(None, "--threads", help="CPU threads for torch (default: usable CPUs minus one, at "
                             "most one per physical core).")
