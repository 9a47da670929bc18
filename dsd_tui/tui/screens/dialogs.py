"""The help dialog and the question asked when quitting with a run still going."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from dsd_core.text import safe_text

# At most 21 lines of at most 76 columns, so the whole help shows at 80×24. `\\[` here is markup's `\[`,
# a literal `[`.
HELP = """\
[b]dsd-tui[/b] distils a diffusion model into fewer sampling steps. Keys by screen:
[b]Setup[/b] (home): the form checks each field as you type
  [b]Enter[/b], [b]Ctrl+S[/b]   start a [i]dsd distill[/i] process writing to runs/…
  [b]Enter[/b] on a run  open it (recent runs, below the form)
  [b]r[/b] on a run      resume a stopped or failed run from its checkpoint
  [b]Ctrl+G[/b]          sample the chosen model before distilling, any solver
[b]Run[/b]: loss (grey), smoothed (cyan), a vertical line where each stage begins;
agreement dB (* best, red: stage ended early); updates per step; previews
  [b]p[/b]               pause / resume (SIGSTOP / SIGCONT, POSIX only)
  [b]s[/b]               stop (the run checkpoints first; [b]r[/b] resumes it)
  [b]e[/b]               export to ONNX, once the run has finished
  A silent run shows "no events for N s" (dsd-tui --hang-after S sets N).
[b]Export[/b]: one ONNX sampler per step count, checked against torch
  [b]Enter[/b]           export the step counts typed in the field
  [b]x[/b] / [b]s[/b]           export again / open the sampler
[b]Sampler[/b]  [b]n[/b], [b]space[/b] new seed · [b]\\[[/b] / [b]][/b] fewer / more steps · [b]s[/b] save as PNG
  [b]c[/b]               class (conditional models)
  [b]v[/b]               solver: ddim (default), dpm++2m, dpm++3m, unipc
[b]Anywhere[/b]  [b]Esc[/b] back · [b]?[/b] this help · [b]q[/b] quit (asks when a run is going)
[b]dsd-tui --attach RUN_DIR[/b] watches a run started elsewhere, finished or not."""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(HELP, id="help-text")

    def on_click(self) -> None:
        self.dismiss()


class QuitScreen(ModalScreen[str]):
    """Dismisses with "leave", "stop" or "cancel"; names the run folders, so a run left going can be found."""

    BINDINGS = [Binding("escape", "dismiss('cancel')", "Cancel"), Binding("l", "dismiss('leave')", show=False),
                Binding("s", "dismiss('stop')", show=False)]

    def __init__(self, run_dirs: list[Path]):
        super().__init__()
        self.run_dirs = list(run_dirs)

    def compose(self) -> ComposeResult:
        runs = "A run is" if len(self.run_dirs) == 1 else f"{len(self.run_dirs)} runs are"
        folders = "\n".join(f"  [b]{escape(safe_text(d))}[/b]" for d in self.run_dirs)
        with Vertical(id="quit-box"):
            yield Static(f"{runs} still going:\n{folders}\n[dim]Left running, it keeps writing its run folder; "
                         "dsd-tui --attach RUN_DIR watches it again.[/dim]", id="quit-question")
            with Horizontal(id="quit-buttons"):
                yield Button("Leave running", id="leave", variant="primary", compact=True)
                yield Button("Stop it", id="stop", variant="error", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)
