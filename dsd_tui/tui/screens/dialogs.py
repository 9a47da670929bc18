"""The help dialog and the question asked when quitting with a run still going."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

HELP = """[b]dsd-tui[/b] — distil a diffusion model into fewer sampling steps, watch it, export it, sample it.

[b]Setup[/b] (home)  fill the form (errors show under a field as you type); [b]Enter[/b] or [b]Start[/b]
  begins a run as a separate [i]dsd distill[/i] process writing to runs/…; recent runs below:
  [b]Enter[/b] opens one, [b]r[/b] resumes a stopped or failed one.
[b]Run[/b]  loss per update (grey) and smoothed (cyan); the step-frequency histogram (updates per step
  index of the finest grid); stage N→N/2, updates/s, NFE, ETA; previews of the undistilled and the
  current model from the same noise.  [b]p[/b] pause/resume (SIGSTOP/SIGCONT, POSIX only)
  [b]s[/b] stop (the run checkpoints; [b]r[/b] resumes it)  [b]e[/b] export when finished  [b]Esc[/b] back
  A silent run shows "no events for N s" (dsd-tui --hang-after S sets N's threshold).
[b]Export[/b]  one ONNX sampler per step count, checked against torch; [b]s[/b] opens the sampler.
[b]Sampler[/b]  [b]n[/b]/[b]space[/b] new seed  [b][[/b] [b]][/b] step count  [b]c[/b] class (conditional models)
  [b]s[/b] save the grid to PNG  — each generation's latency is shown.

[b]?[/b] this help  [b]q[/b] quit (asks when a run is going: leave it running, or stop it)
[b]dsd-tui --attach RUN_DIR[/b] watches a run started elsewhere, finished or not.
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(HELP, id="help-text")

    def on_click(self) -> None:
        self.dismiss()


class QuitScreen(ModalScreen[str]):
    """Dismisses with "leave", "stop" or "cancel"."""

    BINDINGS = [Binding("escape", "dismiss('cancel')", "Cancel"), Binding("l", "dismiss('leave')", show=False),
                Binding("s", "dismiss('stop')", show=False)]

    def __init__(self, count: int):
        super().__init__()
        self.count = count

    def compose(self) -> ComposeResult:
        runs = "A run is" if self.count == 1 else f"{self.count} runs are"
        with Vertical(id="quit-box"):
            yield Static(f"{runs} still going.\n[dim]Left running, it keeps writing its run folder; "
                         "dsd-tui --attach RUN_DIR watches it again.[/dim]", id="quit-question")
            with Horizontal(id="quit-buttons"):
                yield Button("Leave running", id="leave", variant="primary", compact=True)
                yield Button("Stop it", id="stop", variant="error", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)
