"""`dsd-tui`: the Textual app. For now a home screen that says what the app will do and quits cleanly."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Static

from dsd_core import __version__

WELCOME = """[b]dsd-tui[/b] — direct self-distillation of diffusion models

Set up a distillation, watch its loss and step-frequency histogram live,
export the result to ONNX and sample it interactively (coming in the next releases).

Meanwhile use the command line:  [b]dsd train[/b], [b]dsd sample[/b], [b]dsd info[/b].
"""


class DsdApp(App):
    """The dsd terminal app."""

    TITLE = "dsd"
    SUB_TITLE = f"v{__version__}"
    BINDINGS = [("q", "quit", "Quit")]
    CSS = "#welcome { padding: 1 2; }"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(WELCOME, id="welcome")
        yield Footer()


def main() -> None:
    DsdApp().run()
