"""The run's agreement check per update (PSNR in dB of the EMA model against the starting model's fine-grid
samples; higher is better), one line per target step count: each stage is scored at its own step count, so the
levels differ from stage to stage and only a line's own course matters. Stage starts are marked as on the loss
plot; each line's best check is starred (the model the run keeps for that step count); a stage that ended early
gets a red line where it stopped, and a red jump over the updates it skipped, at the level it goes on from. A
check plotext cannot draw (a PSNR that is NaN, infinite or beyond `PLOT_LIMIT`) is left out."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual_plotext import PlotextPlot

from ..runstate import RunState, StageEnd, plottable, restore_of

COLORS = ("cyan", "green", "blue+", "white")  # not orange (stage starts), nor red or magenta (early ends)
TITLE = "agreement dB"


@dataclass(frozen=True)
class Series:
    """The checks at one step count, in log order."""

    steps: int
    updates: list[int]
    psnr: list[float]

    @property
    def best(self) -> tuple[int, float]:
        """The first check with the highest PSNR: the one the run saved as model-best-Nsteps."""
        i = max(range(len(self.psnr)), key=lambda i: (self.psnr[i], -i))
        return self.updates[i], self.psnr[i]


def series(quality: list[tuple[int, int, float]]) -> list[Series]:
    """One series per step count, in the order the run first checked them (its stages' order)."""
    by_steps: dict[int, Series] = {}
    for update, steps, psnr in quality:
        if not (plottable(update) and plottable(psnr)):
            continue
        s = by_steps.setdefault(steps, Series(steps, [], []))
        s.updates.append(update)
        s.psnr.append(psnr)
    return list(by_steps.values())


def jumps(ends: list[StageEnd], restores: list[tuple[int, int, float | None]],
          lines: list[Series]) -> list[tuple[int, int, float]]:
    """(from update, to update, dB) of each early stage end: the updates skipped, at the agreement the run goes on
    from (the restored best's, else the stage's best check's)."""
    best = {s.steps: s.best[1] for s in lines}
    out = []
    for end in ends:
        restore = restore_of(end, restores)
        level = best.get(end.steps) if restore is None or restore[2] is None else restore[2]
        if plottable(level) and plottable(end.update + end.skipped):
            out.append((end.update, end.update + end.skipped, level))
    return out


def boundaries(stage_starts: list[int], first: int, last: int) -> list[float]:
    """Where the stage lines go (between a stage's last update and the next one's first, as on the loss plot), for
    the stages that began inside the checks shown: not the first stage, whose start check comes just before it."""
    return [u - 0.5 for u in stage_starts if first + 1 < u <= last + 1]


def title(lines: list[Series], width: int) -> str:
    full = f"{TITLE} · {'/'.join(str(s.steps) for s in lines)} steps"
    return full if len(full) <= width - 2 else TITLE


class QualityPlot(PlotextPlot):
    """Holds the run's checks, stage starts and early ends; redraws on `show` when they changed."""

    DEFAULT_CSS = "QualityPlot { text-align: center; }"  # the placeholder; the plot fills the width

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lines: list[Series] = []
        self.stage_starts: list[int] = []
        self.ends: list[StageEnd] = []
        self.jumps: list[tuple[int, int, float]] = []
        self.quality_every: int | None = None
        self._shown: tuple = ()

    def on_mount(self) -> None:
        super().on_mount()
        self.replot()

    def show(self, state: RunState) -> None:
        key = (tuple(state.quality), tuple(state.stage_starts), tuple(state.stage_ends), tuple(state.restores),
               state.quality_every)
        if key == self._shown:
            return
        self._shown = key
        self.lines, self.stage_starts = series(state.quality), list(state.stage_starts)
        self.ends, self.quality_every = list(state.stage_ends), state.quality_every
        self.jumps = jumps(self.ends, state.restores, self.lines)
        self.replot()

    def placeholder(self) -> str:
        if self.quality_every == 0:
            return "no agreement checks in this run (--quality-every 0)"
        return "no agreement check yet"

    def boundaries(self) -> list[float]:
        xs = [u for s in self.lines for u in s.updates] + [x for jump in self.jumps for x in jump[:2]]
        return boundaries(self.stage_starts, min(xs), max(xs)) if xs else []

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title(self.lines, self.size.width))
        for boundary in self.boundaries():
            plt.vline(boundary, color="orange")  # plotext draws its "yellow" purple
        for end in self.ends:
            plt.vline(end.update, color="red")
        for x0, x1, level in self.jumps:
            plt.plot([x0, x1], [level, level], marker="braille", color="red")
        for i, line in enumerate(self.lines):
            color = COLORS[i % len(COLORS)]
            plt.plot(line.updates, line.psnr, marker="braille", color=color)
            x, y = line.best
            plt.scatter([x], [y], marker="*", color=color)
        self.refresh()

    def render(self):
        if not self.lines:
            gap = "\n" * max(1, self.size.height // 2 - 1)
            return Text.assemble(TITLE, gap, (self.placeholder(), "dim"))
        return super().render()

    def on_resize(self) -> None:
        self.replot()  # the title's length depends on the width
