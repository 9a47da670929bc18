"""The loss per update with a smoothed line over it (textual-plotext)."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from ..runstate import smooth


def binned(xs: list[int], ys: list[float], bins: int) -> tuple[list[float], list[float]]:
    """Means of consecutive chunks, so a long run draws as many points as the plot has columns."""
    if len(xs) <= bins:
        return list(map(float, xs)), list(ys)
    size = -(-len(xs) // bins)
    chunks = range(0, len(xs), size)
    return ([sum(xs[i:i + size]) / len(xs[i:i + size]) for i in chunks],
            [sum(ys[i:i + size]) / len(ys[i:i + size]) for i in chunks])


class LossPlot(PlotextPlot):
    """Holds the run's losses; redraws on `set_losses`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.updates: list[int] = []
        self.losses: list[float] = []

    def on_mount(self) -> None:
        super().on_mount()
        self.replot()

    def set_losses(self, updates: list[int], losses: list[float]) -> None:
        if len(updates) == len(self.updates) and updates[-1:] == self.updates[-1:]:
            return
        self.updates, self.losses = list(updates), list(losses)
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss per update")
        if self.losses:
            x, y = binned(self.updates, self.losses, max(10, 2 * self.size.width))
            plt.plot(x, y, marker="braille", color="gray")
            plt.plot(x, smooth(y, alpha=min(0.3, 20 / max(20, len(y)))), marker="braille", color="cyan")
        self.refresh()
