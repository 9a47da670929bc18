"""The step-frequency histogram: updates per step index of the finest grid, as vertical bars. A count that is not
one (negative, NaN, infinite: the log is untrusted) draws as an empty bar."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ..runstate import plottable

EIGHTHS = " ▁▂▃▄▅▆▇█"


def columns(counts: list[int], width: int) -> list[int]:
    """One value per column: bins summed when there are more bins than columns."""
    if not counts:
        return []
    group = -(-len(counts) // max(1, width))
    return [sum(counts[i:i + group]) for i in range(0, len(counts), group)]


class StepFrequencyBars(Widget):
    """Bars per finest-grid step index; `counts` is the state tests and the screen set."""

    DEFAULT_CSS = "StepFrequencyBars { height: 1fr; }"
    counts: reactive[tuple[int, ...]] = reactive(tuple, layout=False)

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        counts = [c if plottable(c) and c > 0 else 0 for c in self.counts]
        if not counts or height < 2:
            return Text("no updates yet", style="dim")
        values = columns(counts, width)
        bar_w = max(1, min(4, width // len(values)))
        gap = 1 if bar_w >= 3 else 0
        rows = height - 1
        top = max(values) or 1
        levels = [round(v / top * rows * 8) for v in values]
        text = Text()
        for r in range(rows, 0, -1):
            line = ""
            for level in levels:
                fill = min(8, max(0, level - (r - 1) * 8))
                line += EIGHTHS[fill] * (bar_w - gap) + " " * gap
            text.append(line.rstrip().ljust(width)[:width] + "\n", style="green")
        group = -(-len(counts) // max(1, width))
        last = f"{len(counts) - 1}"
        times = f" (×{group})" if group > 1 else ""
        axis = f"0 step index{times}"
        if len(axis) + 1 + len(last) > width:  # a narrow column: the first and last index, the grouping
            axis = f"0{times}"
        span = len(values) * bar_w - gap
        text.append(axis + last.rjust(max(len(last) + 1, span - len(axis))), style="dim")
        return text
