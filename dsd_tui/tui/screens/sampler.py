"""Generate with the exported ONNX sampler: a new seed per key press, the step count, class and solver chosen,
each generation's latency shown, the grid saved to PNG. onnxruntime runs in a thread worker.

The solvers (DDIM, DPM-Solver++ 2M/3M, UniPC: `dsd_core.solvers_plan.SAMPLERS`) are each unrolled into their own
ONNX graph, so choosing one the screen has no file for exports it once, from the model the DDIM files were exported
from, in a subprocess (`export_job`, where torch loads; never here). DDIM stays the default, also of a distilled
model, which was trained to be walked by DDIM; another solver on it is allowed, and said to be a departure."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Select, Static
from textual.worker import get_current_worker

from dsd_core.solvers_plan import DEFAULT_SAMPLER, LABEL, SAMPLERS, distilled_note
from dsd_core.text import safe_text

from ..export_job import export_argv, export_reports, export_source, fresh_export
from ..grid import compose, fit, to_tiles
from ..messages import SamplerFailed, SamplesReady, SolverExported
from ..setup_form import app_text
from ..widgets.tiles import TileGrid

MAX_NUM = 64
ANY = -1  # the class select's "any class" (unconditional draw)


class SamplerScreen(Screen):
    """`models` maps a step count to its (DDIM) ONNX sampler file; `save_dir` receives saved grids and the exports
    of other solvers, made from `source` (default: the model the first file's export report names; without one
    only DDIM is offered)."""

    BINDINGS = [
        Binding("n", "new_seed", "New seed"),
        Binding("space", "new_seed", "New seed", show=False),
        Binding("[", "steps(-1)", "−steps"),
        Binding("]", "steps(1)", "+steps"),
        Binding("c", "next_class", "Class"),
        Binding("v", "next_solver", "Solver"),
        Binding("s", "save", "Save PNG"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    clock = staticmethod(time.perf_counter)  # swapped for a fixed clock in snapshot tests

    def __init__(self, models: dict[int, Path], save_dir: Path, source: Path | None = None):
        super().__init__()
        self.models, self.save_dir = dict(models), Path(save_dir)
        self.source = Path(source) if source is not None else (export_source(next(iter(self.models.values())))
                                                              if self.models else None)
        self.files = {(steps, DEFAULT_SAMPLER): path for steps, path in self.models.items()}
        self.exporting: tuple[int, str] | None = None  # the (steps, solver) being exported
        self.noted: set[str] = set()  # solvers already said to be a departure for a distilled model
        self.samplers: dict[Path, object] = {}
        self.one_at_a_time = threading.Lock()
        self.seed = 0
        self.num_classes = 0
        self.class_names: tuple[str, ...] | None = None
        self.latest: SamplesReady | None = None
        self.generations = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="sampler-controls"):
            yield Label("steps ")
            yield Select([(str(s), s) for s in self.models], value=next(iter(self.models)), id="steps",
                         allow_blank=False, compact=True)
            yield Label(" class ", id="class-label")
            yield Select([("any", ANY)], value=ANY, id="class", allow_blank=False, compact=True)
            yield Label(" solver ", id="solver-label")
            yield Select([(s, s) for s in SAMPLERS], value=DEFAULT_SAMPLER, id="solver", allow_blank=False,
                         compact=True)
        yield Static("loading the ONNX sampler…", id="sample-info")
        yield TileGrid(id="samples")
        yield Footer()

    def on_mount(self) -> None:
        self.show_classes(False)
        for widget in self.query("#solver, #solver-label"):
            widget.display = self.offers_solvers
        self.generate()

    @property
    def offers_solvers(self) -> bool:
        """Other solvers need a model to export them from."""
        return self.source is not None

    def show_classes(self, visible: bool) -> None:
        for widget in self.query("#class, #class-label"):
            widget.display = visible

    # -- generation ---------------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return int(self.query_one("#steps", Select).value)

    @property
    def label(self) -> int | None:
        value = self.query_one("#class", Select).value
        # Select.BLANK is False, which equals class 0: compared by identity, or class 0 could never be chosen
        return None if value is Select.BLANK or value == ANY else int(value)

    @property
    def solver(self) -> str:
        value = self.query_one("#solver", Select).value
        return DEFAULT_SAMPLER if value is Select.BLANK else str(value)

    def file_for(self, steps: int, solver: str) -> Path | None:
        """The ONNX file of `steps` with `solver`: exported in this session or, still current, before."""
        path = self.files.get((steps, solver))
        if path is None and self.source is not None:
            path = fresh_export(self.save_dir, self.source, steps, solver)
            if path is not None:
                self.files[(steps, solver)] = path
        return path

    def generate(self) -> None:
        steps, solver = self.steps, self.solver
        path = self.file_for(steps, solver)
        info = self.query_one("#sample-info", Static)
        if path is None:
            if self.source is None:  # not offered then; kept for safety
                info.update(f"[red]sampler error:[/red] no {solver} export of {steps} steps and no model to make it")
                return
            if self.exporting != (steps, solver):
                info.update(f"exporting the {LABEL[solver]} sampler for {steps} steps (once; torch runs in a "
                            "subprocess)…")
                self.export(steps, solver)
            return
        info.update(f"generating seed {self.seed}…")
        self.sample(path, self.seed, steps, self.label, solver)

    @work(exclusive=True, group="export")
    async def export(self, steps: int, solver: str) -> None:
        """Export `solver`'s sampler for `steps` from the source model in a subprocess; a newer request (another
        solver or step count chosen meanwhile) cancels this one and ends its subprocess."""
        self.exporting = (steps, solver)
        lines: list[str] = []
        path = None
        try:
            proc = await asyncio.create_subprocess_exec(*export_argv(self.source, self.save_dir, [steps], solver),
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
        except OSError as exc:
            self.exporting = None
            self.post_message(SolverExported(steps, solver, None, [f"cannot start the export: {exc}"]))
            return
        try:
            assert proc.stdout is not None
            async for report in export_reports(proc.stdout, lines):
                path = Path(report["path"])
            code = await proc.wait()
        finally:
            if proc.returncode is None:  # cancelled: the export is no longer wanted
                proc.kill()
            if self.exporting == (steps, solver):
                self.exporting = None
        self.post_message(SolverExported(steps, solver, path if code == 0 else None, lines))

    @on(SolverExported)
    def exported(self, message: SolverExported) -> None:
        if message.path is not None:
            self.files[(message.steps, message.solver)] = message.path
            if (message.steps, message.solver) == (self.steps, self.solver):
                self.generate()
            return
        if (message.steps, message.solver) != (self.steps, self.solver):
            return  # no longer asked for
        errors = [ln for ln in message.lines if ln.startswith("error:")] or message.lines[-3:] or ["no output"]
        self.query_one("#sample-info", Static).update(Content.from_markup(
            f"[red]export of {message.solver} failed:[/red] $errors", errors=safe_text(" ".join(errors))))

    @work(thread=True, exclusive=True, group="sample")
    def sample(self, path: Path, seed: int, steps: int, label: int | None, solver: str = DEFAULT_SAMPLER) -> None:
        from dsd_core.errors import DsdError
        from exporters.runtime import OnnxSampler

        with self.one_at_a_time:  # key presses queue up rather than run side by side
            if get_current_worker().is_cancelled:
                return  # a newer key press replaced this one while it waited
            try:
                sampler = self.samplers.get(path)
                num = self.capacity(sampler.image_shape if sampler else (1, 8, 8))
                if sampler is None:
                    sampler = self.samplers[path] = OnnxSampler(path, threads=self.app.sample_threads)
                    num = self.capacity(sampler.image_shape)
                    sampler.sample(num, seed)  # onnxruntime's first run on a shape is slow: not a key press's
                start = self.clock()
                images = sampler.sample(num, seed, class_labels=label if sampler.num_classes else None)
                seconds = self.clock() - start
            except DsdError as exc:
                self.post_message(SamplerFailed(app_text(exc)))
                return
        names = getattr(sampler, "class_names", None)
        if sampler.num_classes != self.num_classes or names != self.class_names:
            self.app.call_from_thread(self.set_classes, sampler.num_classes, names)
        # what the file walks and what the model was distilled for, as its metadata says
        distilled = (getattr(sampler, "metadata", None) or {}).get("distilled_steps")
        self.post_message(SamplesReady(images, seed, steps, label, seconds, getattr(sampler, "sampler", solver),
                                       int(distilled) if isinstance(distilled, int) else None, path))

    def capacity(self, image_shape: tuple[int, ...]) -> int:
        """As many images as the grid shows (at most MAX_NUM): generating unseen ones costs latency."""
        size = self.query_one("#samples", TileGrid).content_size
        cols, rows = fit(image_shape[-2], image_shape[-1], size.width, size.height, MAX_NUM)
        return cols * rows

    def set_classes(self, num_classes: int, names: tuple[str, ...] | None = None) -> None:
        """The class select: ids, or the names the export's metadata gives (emoji categories)."""
        self.num_classes, self.class_names = num_classes, names
        select = self.query_one("#class", Select)
        select.set_options([("any", ANY)] + [(self.class_label(k), k) for k in range(num_classes)])
        select.value = ANY
        self.show_classes(num_classes > 0)
        self.refresh_bindings()

    def class_label(self, k: int) -> str:
        return f"{k} {self.class_names[k]}" if self.class_names and 0 <= k < len(self.class_names) else str(k)

    @on(SamplesReady)
    def show(self, message: SamplesReady) -> None:
        self.latest = message
        self.generations += 1
        grid = self.query_one("#samples", TileGrid)
        grid.set_tiles(to_tiles(message.images))
        sampler = self.samplers.get(message.path)
        provider = getattr(sampler, "provider", "").replace("ExecutionProvider", "")
        what = (f"class {self.class_label(message.label)}" if message.label is not None
                else ("any class" if self.num_classes else ""))
        walk = LABEL.get(message.sampler, message.sampler)
        note = distilled_note(self.model_name, message.distilled_steps, message.sampler)
        if note:
            walk += f" [yellow](distilled for {message.distilled_steps}-step DDIM)[/yellow]"
            if message.sampler not in self.noted:  # said once per solver, in full
                self.noted.add(message.sampler)
                self.notify(safe_text(note), severity="warning", timeout=8, markup=False)  # names the file
        self.query_one("#sample-info", Static).update(
            f"seed {message.seed} · {message.steps} steps · {walk}{' · ' + what if what else ''} · "
            f"[b]{message.seconds * 1000:.0f} ms[/b] for {len(message.images)} images ({provider})")

    @property
    def model_name(self) -> str:
        return self.source.stem if self.source is not None else next(iter(self.models.values())).stem

    @on(SamplerFailed)
    def failed(self, message: SamplerFailed) -> None:
        self.query_one("#sample-info", Static).update(
            Content.from_markup("[red]sampler error:[/red] $error", error=safe_text(message.error)))

    @on(Select.Changed)
    def choice_changed(self, event: Select.Changed) -> None:
        if self.is_mounted and event.value is not Select.BLANK:
            self.generate()

    # -- keys ---------------------------------------------------------------------------------------
    def action_new_seed(self) -> None:
        self.seed += 1
        self.generate()

    def action_steps(self, delta: int) -> None:
        counts = list(self.models)
        i = counts.index(self.steps) + delta
        if 0 <= i < len(counts):
            self.query_one("#steps", Select).value = counts[i]
        else:  # say why nothing changes
            self.notify(steps_limit(counts, self.steps, delta), severity="warning", timeout=4)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_class":
            return self.num_classes > 0
        if action == "next_solver":
            return self.offers_solvers
        return True

    def action_next_solver(self) -> None:
        if self.offers_solvers:
            select = self.query_one("#solver", Select)
            select.value = SAMPLERS[(SAMPLERS.index(self.solver) + 1) % len(SAMPLERS)]

    def action_next_class(self) -> None:
        if self.num_classes:
            current = self.label
            self.query_one("#class", Select).value = 0 if current is None else (
                ANY if current + 1 >= self.num_classes else current + 1)

    def action_save(self) -> None:
        if self.latest is None:
            return
        m = self.latest
        solver = "" if m.sampler == DEFAULT_SAMPLER else f"-{m.sampler}"
        name = f"samples-{m.steps}steps{solver}-seed{m.seed}{'' if m.label is None else f'-class{m.label}'}.png"
        path = self.save_dir / name
        try:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            cols = self.query_one("#samples", TileGrid).cols or len(m.images)
            compose(to_tiles(m.images), cols, -(-len(m.images) // cols), gap=4, scale=8).save(path)
        except OSError as exc:
            self.notify(safe_text(f"cannot save {path}: {exc.strerror or exc}"), severity="error", markup=False)
            return
        self.notify(safe_text(f"saved {path}"), markup=False)


def steps_limit(counts: list[int], steps: int, delta: int) -> str:
    """Why `[`/`]` cannot go further: one step count exported, or already the fewest/most."""
    more = "go back (esc) and type more step counts, e.g. 2 4 8"
    if len(counts) == 1:
        return f"only {steps} steps exported; to compare step counts, {more}"
    edge = "fewest" if delta < 0 else "most"
    return f"{steps} steps is the {edge} exported ({', '.join(map(str, counts))}); for others, {more}"
