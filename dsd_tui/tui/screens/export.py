"""Export a model to ONNX, one (DDIM) sampler graph per step count, each checked against torch: a run's distilled
model, or the model chosen on the setup screen (an undistilled one to try the training-free solvers on)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Static

from dsd_core.runs import RunPaths
from dsd_core.text import safe_text

from ..export_job import earlier_exports, export_argv, export_reports
from ..messages import ExportFinished


def parse_steps(text: str) -> list[int] | None:
    try:
        steps = [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        return None
    return steps if steps and all(1 <= s <= 1000 for s in steps) else None


class StepsInput(Input):
    """The step counts field; its Enter shows in the footer, which hides the screen's letter keys (typed here)."""

    BINDINGS = [Binding("enter", "submit", "Export")]


class ExportScreen(Screen):
    """Exports the run's target step count on arrival (unless done before); more step counts on request;
    `s` then opens the sampler on everything exported. `out_dir` (default: the run's `onnx/` folder) receives
    the exports."""

    AUTO_FOCUS = "#exports"  # not the steps field, which would swallow the screen's keys
    BINDINGS = [
        Binding("x", "export", "Export again"),
        Binding("s", "sampler", "Sampler"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, run_dir: Path, model: Path, steps: int, out_dir: Path | None = None):
        super().__init__()
        self.run_dir, self.model, self.steps = Path(run_dir), Path(model), steps
        self.out_dir = Path(out_dir) if out_dir is not None else RunPaths(run_dir).onnx
        self.exported: dict[int, Path] = {}
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Content.from_markup(  # the model's path comes from the run's event log: plain text
            "[b]Export to ONNX[/b]  $model\n[dim]one sampler graph (noise → images) per step count, checked "
            "against torch[/dim]", model=safe_text(self.model)), id="export-title")
        with Horizontal(id="export-row"):
            yield Label("step counts", id="export-steps-label")
            yield StepsInput(str(self.steps), id="export-steps", compact=True)
            yield Button("Export", id="export-go", compact=True, variant="primary")
        yield Static("", id="export-steps-error", classes="error")
        yield DataTable(id="exports", cursor_type="row")
        yield Static("", id="export-message")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#exports", DataTable).add_columns("file", "steps", "max |onnx − torch|", "seconds")
        for report in earlier_exports(self.out_dir, self.model):
            self.add_export(report)
        if self.steps in self.exported:
            self.query_one("#export-message", Static).update(
                "exported before (listed above) · [b]s[/b] opens the sampler · other step counts: type them above")
            self.refresh_bindings()
        else:
            self.action_export()

    @on(Input.Submitted, "#export-steps")
    @on(Button.Pressed, "#export-go")
    def action_export(self) -> None:
        if self.busy:
            return
        steps = parse_steps(self.query_one("#export-steps", Input).value)
        error = self.query_one("#export-steps-error", Static)
        if steps is None:
            error.update("give step counts between 1 and 1000, e.g. 8 16")
            return
        error.update("")
        self.busy = True
        self.query_one("#export-message", Static).update(f"exporting {', '.join(map(str, steps))} steps…")
        self.run_export(steps)

    @work(exclusive=True, group="export")
    async def run_export(self, steps: list[int]) -> None:
        lines, diffs, path = [], [], None
        try:
            proc = await asyncio.create_subprocess_exec(*export_argv(self.model, self.out_dir, steps),
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
        except OSError as exc:
            self.post_message(ExportFinished(False, None, [f"cannot start the export: {exc}"]))
            return
        assert proc.stdout is not None
        async for report in export_reports(proc.stdout, lines):
            path = Path(report["path"])
            diffs.append(report["max_abs_diff"])
            self.add_export(report)
        code = await proc.wait()
        self.post_message(ExportFinished(code == 0, path, lines, max(diffs) if diffs else None))

    def add_export(self, report: dict) -> None:
        path, steps = Path(report["path"]), int(report["steps"])
        table = self.query_one("#exports", DataTable)
        if steps in self.exported:
            table.remove_row(str(steps))
        self.exported[steps] = path
        table.add_row(escape(safe_text(path.name)), str(steps), f"{report['max_abs_diff']:.1e}  ✓",
                      f"{report['seconds']:.1f}", key=str(steps))

    @on(ExportFinished)
    def finished(self, message: ExportFinished) -> None:
        self.busy = False
        text = self.query_one("#export-message", Static)
        if message.ok:
            text.update(f"[green]exported[/green]: onnxruntime matches torch to {message.max_abs_diff:.1e} "
                        f"(tolerance 1e-4) · [b]s[/b] opens the sampler")
        else:
            errors = [ln for ln in message.lines if ln.startswith("error:")] or message.lines[-3:] or ["no output"]
            text.update(Content.from_markup("[red]export failed:[/red] $errors",
                                            errors="\n".join(map(safe_text, errors))))
        if isinstance(self.focused, Input):  # hand the screen's keys (s, x) back, and the footer with them
            self.query_one("#exports", DataTable).focus()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "sampler":
            return bool(self.exported)
        return True

    def action_sampler(self) -> None:
        if self.exported:
            self.app.open_sampler(dict(sorted(self.exported.items())), self.out_dir)
