"""The loss per update with a smoothed line over it, and a vertical line where each stage begins: the loss
jumps there (a new, finer grid to learn), which is not divergence (textual-plotext). A point plotext cannot draw
(NaN, infinite, beyond `PLOT_LIMIT`: it raises on them) is left out, a gap in the line."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from ..runstate import plottable, smooth


def binned(xs: list[int], ys: list[float], bins: int) -> tuple[list[float], list[float]]:
    """Means of consecutive chunks, so a long run draws as many points as the plot has columns."""
    if len(xs) <= bins:
        return list(map(float, xs)), list(ys)
    size = -(-len(xs) // bins)
    chunks = range(0, len(xs), size)
    return ([sum(xs[i:i + size]) / len(xs[i:i + size]) for i in chunks],
            [sum(ys[i:i + size]) / len(ys[i:i + size]) for i in chunks])


class LossPlot(PlotextPlot):
    """Holds the run's losses and stage starts; redraws on `set_losses`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.updates: list[int] = []
        self.losses: list[float] = []
        self.stage_starts: list[int] = []

    def on_mount(self) -> None:
        super().on_mount()
        self.replot()

    def set_losses(self, updates: list[int], losses: list[float], stage_starts: list[int] = ()) -> None:
        if len(updates) == len(self.updates) and updates[-1:] == self.updates[-1:] \
                and list(stage_starts) == self.stage_starts:
            return
        points = [(u, y) for u, y in zip(updates, losses) if plottable(u) and plottable(y)]
        self.updates, self.losses = [u for u, _ in points], [y for _, y in points]
        self.stage_starts = [u for u in stage_starts if plottable(u)]
        self.replot()

    def boundaries(self) -> list[float]:
        """Where the plot draws stage lines: between the last update of a stage and the first of the next,
        for the stages that began after the first loss shown."""
        if not self.updates:
            return []
        return [u - 0.5 for u in self.stage_starts if self.updates[0] < u <= self.updates[-1]]

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss per update")
        if self.losses:
            x, y = binned(self.updates, self.losses, max(10, 2 * self.size.width))
            for boundary in self.boundaries():
                plt.vline(boundary, color="orange")  # plotext draws its "yellow" purple
            plt.plot(x, y, marker="braille", color="gray")
            plt.plot(x, smooth(y, alpha=min(0.3, 20 / max(20, len(y)))), marker="braille", color="cyan")
        self.refresh()
