"""Generate with the exported ONNX sampler: a new seed per key press, the step count and class chosen,
each generation's latency shown, the grid saved to PNG. onnxruntime runs in a thread worker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Select, Static
from textual.worker import get_current_worker

from ..grid import compose, fit, to_tiles
from ..messages import SamplerFailed, SamplesReady
from ..setup_form import app_text
from ..widgets.tiles import TileGrid

MAX_NUM = 64
ANY = -1  # the class select's "any class" (unconditional draw)


class SamplerScreen(Screen):
    """`models` maps a step count to its ONNX sampler file; `save_dir` receives saved grids."""

    BINDINGS = [
        Binding("n", "new_seed", "New seed"),
        Binding("space", "new_seed", "New seed", show=False),
        Binding("[", "steps(-1)", "−steps"),
        Binding("]", "steps(1)", "+steps"),
        Binding("c", "next_class", "Class"),
        Binding("s", "save", "Save PNG"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    clock = staticmethod(time.perf_counter)  # swapped for a fixed clock in snapshot tests

    def __init__(self, models: dict[int, Path], save_dir: Path):
        super().__init__()
        self.models, self.save_dir = dict(models), Path(save_dir)
        self.samplers: dict[Path, object] = {}
        self.one_at_a_time = threading.Lock()
        self.seed = 0
        self.num_classes = 0
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
        yield Static("loading the ONNX sampler…", id="sample-info")
        yield TileGrid(id="samples")
        yield Footer()

    def on_mount(self) -> None:
        self.show_classes(False)
        self.generate()

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
        return None if value in (ANY, Select.BLANK) else int(value)

    def generate(self) -> None:
        self.query_one("#sample-info", Static).update(f"generating seed {self.seed}…")
        self.sample(self.models[self.steps], self.seed, self.steps, self.label)

    @work(thread=True, exclusive=True, group="sample")
    def sample(self, path: Path, seed: int, steps: int, label: int | None) -> None:
        from dsd_core.errors import DsdError
        from exporters.runtime import OnnxSampler

        with self.one_at_a_time:  # key presses queue up rather than run side by side
            if get_current_worker().is_cancelled:
                return  # a newer key press replaced this one while it waited
            try:
                sampler = self.samplers.get(path)
                num = self.capacity(sampler.image_shape if sampler else (1, 8, 8))
                if sampler is None:
                    sampler = self.samplers[path] = OnnxSampler(path, threads=self.app.threads)
                    num = self.capacity(sampler.image_shape)
                    sampler.sample(num, seed)  # onnxruntime's first run on a shape is slow: not a key press's
                start = self.clock()
                images = sampler.sample(num, seed, class_labels=label if sampler.num_classes else None)
                seconds = self.clock() - start
            except DsdError as exc:
                self.post_message(SamplerFailed(app_text(exc)))
                return
        if sampler.num_classes != self.num_classes:
            self.app.call_from_thread(self.set_classes, sampler.num_classes)
        self.post_message(SamplesReady(images, seed, steps, label, seconds))

    def capacity(self, image_shape: tuple[int, ...]) -> int:
        """As many images as the grid shows (at most MAX_NUM): generating unseen ones costs latency."""
        size = self.query_one("#samples", TileGrid).content_size
        cols, rows = fit(image_shape[-2], image_shape[-1], size.width, size.height, MAX_NUM)
        return cols * rows

    def set_classes(self, num_classes: int) -> None:
        self.num_classes = num_classes
        select = self.query_one("#class", Select)
        select.set_options([("any", ANY)] + [(str(k), k) for k in range(num_classes)])
        select.value = ANY
        self.show_classes(num_classes > 0)
        self.refresh_bindings()

    @on(SamplesReady)
    def show(self, message: SamplesReady) -> None:
        self.latest = message
        self.generations += 1
        grid = self.query_one("#samples", TileGrid)
        grid.set_tiles(to_tiles(message.images))
        sampler = self.samplers.get(self.models.get(message.steps))
        provider = getattr(sampler, "provider", "").replace("ExecutionProvider", "")
        what = f"class {message.label}" if message.label is not None else ("any class" if self.num_classes else "")
        self.query_one("#sample-info", Static).update(
            f"seed {message.seed} · {message.steps} steps{' · ' + what if what else ''} · "
            f"[b]{message.seconds * 1000:.0f} ms[/b] for {len(message.images)} images ({provider})")

    @on(SamplerFailed)
    def failed(self, message: SamplerFailed) -> None:
        self.query_one("#sample-info", Static).update(f"[red]sampler error:[/red] {message.error}")

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
        return True

    def action_next_class(self) -> None:
        if self.num_classes:
            current = self.label
            self.query_one("#class", Select).value = 0 if current is None else (
                ANY if current + 1 >= self.num_classes else current + 1)

    def action_save(self) -> None:
        if self.latest is None:
            return
        m = self.latest
        name = f"samples-{m.steps}steps-seed{m.seed}{'' if m.label is None else f'-class{m.label}'}.png"
        path = self.save_dir / name
        try:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            cols = self.query_one("#samples", TileGrid).cols or len(m.images)
            compose(to_tiles(m.images), cols, -(-len(m.images) // cols), gap=4, scale=8).save(path)
        except OSError as exc:
            self.notify(f"cannot save {path}: {exc.strerror or exc}", severity="error")
            return
        self.notify(f"saved {path}")


def steps_limit(counts: list[int], steps: int, delta: int) -> str:
    """Why `[`/`]` cannot go further: one step count exported, or already the fewest/most."""
    more = "go back (esc) and type more step counts, e.g. 2 4 8"
    if len(counts) == 1:
        return f"only {steps} steps exported; to compare step counts, {more}"
    edge = "fewest" if delta < 0 else "most"
    return f"{steps} steps is the {edge} exported ({', '.join(map(str, counts))}); for others, {more}"
