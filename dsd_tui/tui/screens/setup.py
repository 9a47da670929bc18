"""Home: set up a distillation (inline errors as you type) and start it; open or resume a recent run."""

from __future__ import annotations

from rich.cells import cell_len
from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static

from dsd_core.text import safe_text

from ..catalog import Catalog, load_catalog, method_label
from ..messages import CatalogLoaded
from ..recent import RecentRun, recent_runs
from ..setup_form import CHECKPOINT, CROSS_CHECKED, DEFAULTS, LABELS, DistillRequest, check, sample_request
from .export import ExportScreen

FIELDS = [  # (key, label, kind); kind "select" or "input"
    (key, LABELS[key], kind) for key, kind in (
        ("model", "select"), ("path", "input"), ("method", "select"), ("schedule", "select"), ("n_from", "input"),
        ("n_to", "input"), ("updates", "input"), ("batch", "input"), ("lr", "input"), ("seed", "input"))
]
PLACEHOLDERS = {"path": "file or diffusers folder"}
RECENT_COLUMNS = ("run", "method", "steps", "progress", "status")
RUN_NAME_MIN = 8  # the run column's narrowest; below it the table scrolls sideways


def choices(catalog: Catalog) -> dict[str, list[tuple[str, str]]]:
    return {
        "model": [(m, m) for m in catalog.models] + [("checkpoint file…", CHECKPOINT)],
        "method": [(method_label(m), m) for m in catalog.methods],
        "schedule": [(s, s) for s in catalog.schedules],
    }


def shorten(text: str, width: int) -> str:
    """The head and the tail of a name too long for its column (a run name ends in its time stamp)."""
    if cell_len(text) <= width:
        return text
    tail = (width - 1) * 2 // 3
    head = max(width - 1 - tail, 0)
    return text[:head] + "…" + (text[-tail:] if tail else "")


def default_choice(options: list[tuple[str, str]], wanted: object) -> str:
    values = [v for _, v in options]
    return wanted if wanted in values else values[0]


class SetupScreen(Screen):
    """The form and the recent runs; Enter in any field (or the Start button) starts the run."""

    BINDINGS = [
        Binding("ctrl+s", "start", "Start run"),
        Binding("ctrl+g", "sample_model", "Sample model"),
        Binding("o", "open_run", "Open run", show=False),
        Binding("r", "resume_run", "Resume run", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="setup"):
            yield Static("[b]Distil a diffusion model into fewer sampling steps[/b]", id="setup-title")
            with Grid(id="form"):
                for key, label, kind in FIELDS:
                    yield Label(label, classes="field-label")
                    with Vertical(classes="field"):
                        if kind == "select":
                            options = choices(self.app.catalog)[key]
                            yield Select(options, value=default_choice(options, DEFAULTS[key]), id=key,
                                         allow_blank=False, compact=True)
                        else:
                            yield Input(DEFAULTS[key], id=key, compact=True, placeholder=PLACEHOLDERS.get(key, ""),
                                        disabled=key == "path")
                        yield Static("", id=f"{key}-error", classes="error", markup=False)
            with Horizontal(id="start-row"):
                yield Button("Start distilling", id="start", variant="primary", compact=True)
                yield Static("", id="start-note")
            yield Static("[b]Recent runs[/b]  [dim]enter opens · r resumes a stopped run[/dim]", id="recent-title")
            yield DataTable(id="recent", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.fill_choices(self.app.catalog)
        table = self.query_one("#recent", DataTable)
        table.add_columns(*RECENT_COLUMNS)
        self.refresh_recent()
        self.query_one("#start", Button).focus()
        if not self.app.catalog.loaded:
            self.ask_engine()

    def on_screen_resume(self) -> None:
        self.refresh_recent()

    def on_resize(self) -> None:
        if hasattr(self, "runs"):  # not before the first refresh_recent
            self.show_recent()

    @work(exclusive=True, group="catalog")
    async def ask_engine(self) -> None:
        self.post_message(CatalogLoaded(await load_catalog()))

    @on(CatalogLoaded)
    def catalog_loaded(self, message: CatalogLoaded) -> None:
        self.app.catalog = message.catalog
        self.fill_choices(message.catalog)

    def fill_choices(self, catalog: Catalog) -> None:
        """Set each select's options, keeping what the user already chose when it is still offered."""
        for key, options in choices(catalog).items():
            select = self.query_one(f"#{key}", Select)
            current = select.value
            select.set_options(options)
            select.value = default_choice(options, current)

    # -- the form -----------------------------------------------------------------------------------
    def values(self) -> dict[str, str]:
        out = {}
        for key, _, _kind in FIELDS:
            widget = self.query_one(f"#{key}")
            value = widget.value
            out[key] = "" if value is Select.BLANK or value is None else str(value)
        out["threads"] = str(self.app.threads)
        return out

    def validate(self, show: set[str] | None = None) -> DistillRequest | None:
        """Check every field; show the errors of `show` (all when None) and clear the others."""
        catalog = self.app.catalog
        request, errors = check(self.values(), catalog.methods, catalog.schedules, catalog.models)
        for key, _, _ in FIELDS:
            if show is None or key in show or key not in errors:
                error = self.query_one(f"#{key}-error", Static)
                error.update(errors.get(key, ""))
                error.display = key in errors
            self.query_one(f"#{key}").set_class(key in errors and (show is None or key in show), "-invalid")
        if request is not None:
            self.query_one("#start-note", Static).update("")  # "fix the fields marked above" is done
        return request

    def validate_field(self, key: str) -> None:
        """Show the field's own error, and the step-count rules' as soon as any field they read changes."""
        self.validate(show={key, *CROSS_CHECKED} if key in CROSS_CHECKED else {key})

    @on(Input.Changed)
    def input_changed(self, event: Input.Changed) -> None:
        self.validate_field(event.input.id)

    @on(Select.Changed)
    def select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "model":
            path = self.query_one("#path", Input)
            path.disabled = event.value != CHECKPOINT
            if not path.disabled:
                path.focus()
        self.validate_field(event.select.id)

    @on(Input.Submitted)
    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        request = self.validate()
        note = self.query_one("#start-note", Static)
        if request is None:
            note.update("[red]fix the fields marked above[/red]")
            return
        note.update("")
        self.app.start_run(request)

    def action_sample_model(self) -> None:
        """Export the form's model (undistilled, or a shipped distilled one) and sample it, before distilling:
        its sampler screen offers the training-free solvers (DPM-Solver++, UniPC) beside DDIM."""
        request, errors = sample_request(self.values(), self.app.catalog.models, self.app.runs_root)
        for key, text in errors.items():
            error = self.query_one(f"#{key}-error", Static)
            error.update(text)
            error.display = True
        if request is None:
            self.query_one("#start-note", Static).update("[red]fix the model marked above to sample it[/red]")
            return
        self.app.push_screen(ExportScreen(request.out_dir, request.model, request.steps, out_dir=request.out_dir))

    # -- recent runs --------------------------------------------------------------------------------
    def refresh_recent(self) -> None:
        self.runs: list[RecentRun] = recent_runs(self.app.runs_root)
        self.show_recent()

    def show_recent(self) -> None:
        """The runs, their names shortened so that the status column stays in view at any width. Names and
        settings come from the run folders: made `safe_text`, shortened, then markup-escaped (a DataTable reads a
        str cell as Rich markup)."""
        rows = [tuple(map(safe_text, (run.path.name, method_label(safe_text(run.method)), f"{run.steps} {run.schedule}",
                                      f"{run.update}/{run.updates}", run.status))) for run in self.runs]
        if not rows:
            rows = [(safe_text(f"none yet in {self.app.runs_root}/"), "", "", "", "")]
        table = self.query_one("#recent", DataTable)
        width = table.size.width or self.app.size.width - 2  # before the first layout: the screen less padding
        others = sum(2 + max(cell_len(row[i]) for row in [RECENT_COLUMNS, *rows]) for i in range(1, 5))
        scrollbar = table.styles.scrollbar_size_vertical  # kept free: many runs scroll
        name_width = max(RUN_NAME_MIN, width - others - 2 - scrollbar)
        cursor = table.cursor_row
        table.clear()
        for name, *rest in rows:
            table.add_row(escape(shorten(name, name_width)), *map(escape, rest))
        table.move_cursor(row=min(cursor, len(rows) - 1))

    def selected_run(self) -> RecentRun | None:
        table = self.query_one("#recent", DataTable)
        if not self.runs or not table.has_focus:
            return None
        return self.runs[min(table.cursor_row, len(self.runs) - 1)]

    @on(DataTable.RowSelected, "#recent")
    def action_open_run(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.app.open_run(run.path)

    def action_resume_run(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        if run.resumable:
            self.app.resume_run(run.path)
        else:
            why = "it has no checkpoint yet" if run.status in ("stopped", "failed") else f"it is {run.status}"
            why += f" (pid {run.pid})" if run.pid else ""
            self.notify(safe_text(f"cannot resume {run.path.name}: {why}"), severity="warning", markup=False)
