"""What the run screen shows, folded from a run's events: one pure function of the event log.

The log is untrusted (`dsd_core.events` types its fields; counts are whole numbers in [0, 2⁶³)): a loss or PSNR
that is NaN, infinite or beyond `PLOT_LIMIT` is left out of the plots (a gap), sizes are held to dsd's limits,
and the parts of a config no event type describes are read field by field. Text from the log is shown as plain
text by the screen (`dsd_core.text.safe_text`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsd_core import events as ev
from dsd_core.limits import MAX_TIMESTEPS

RATE_WINDOW = 50  # loss events the updates/s estimate looks back over
PLOT_LIMIT = 1e300  # plotext overflows on a range near 1.8e308 (the largest float); no loss or PSNR gets near it


def plottable(value: object) -> bool:
    """A number the plots can draw: finite and within ±PLOT_LIMIT (not a bool, not a string)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and abs(value) <= PLOT_LIMIT)


def count(value: object, default: Any = 0) -> Any:
    """A whole number in [0, 2⁶³) from a part of the log no event type describes (a config's dict), else
    `default`."""
    return value if ev.is_count(value) else default


def name(value: object) -> str:
    """A string from such a part of the log, else ""."""
    return value if isinstance(value, str) else ""


@dataclass
class Preview:
    update: int
    path: Path
    label: str


@dataclass(frozen=True)
class StageEnd:
    """A stage that ended before its budget: `checks` agreement checks found no better model."""

    update: int
    steps: int  # the stage's target step count
    skipped: int
    checks: int
    name: str  # "16→8", as the status line names stages


@dataclass
class RunState:
    """Everything known about a run so far; `apply` takes events in log order."""

    method: str = ""
    schedule: str = ""
    n_from: int = 0
    n_to: int = 0
    total_updates: int = 0
    threads: int | None = None  # the CPU threads the run was started with (config.json's "threads")
    stages: list[dict] = field(default_factory=list)
    stage: dict | None = None
    stage_starts: list[int] = field(default_factory=list)  # the first update of each stage, for the loss plot
    updates: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    update: int = 0
    nfe: int = 0
    finest_grid: list[int] = field(default_factory=list)
    histogram: list[int] = field(default_factory=list)
    previews: list[Preview] = field(default_factory=list)
    snapshots: dict[int, Path] = field(default_factory=dict)
    quality: list[tuple[int, int, float]] = field(default_factory=list)  # (update, steps, PSNR) of each check
    quality_every: int | None = None  # the run's --quality-every (None: not in its config); 0: no checks
    stage_ends: list[StageEnd] = field(default_factory=list)
    restores: list[tuple[int, int, float | None]] = field(default_factory=list)  # (update, steps, PSNR) of each
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    interrupted: bool = False  # stopped by Ctrl-C (or the app's stop) after a checkpoint
    model: Path | None = None
    wall_seconds: float | None = None
    last_event_time: float | None = None
    events: int = 0
    rate_from: int = 0  # the speed is measured on losses logged since the last (re)start

    def apply(self, event: ev.Event | dict) -> None:
        """Folds in one event; a dict (a decoded line) is parsed first, and an unreadable one becomes a warning."""
        self.events += 1
        if isinstance(event, dict):
            try:
                event = ev.parse(event)
            except ev.EventError as exc:
                self.warnings.append(f"unreadable {event.get('event')} event: {exc}")
                return
        if event.time is not None and math.isfinite(event.time):
            self.last_event_time = float(event.time)
        handler = HANDLERS.get(type(event))
        if handler is not None:
            try:
                handler(self, event)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError) as exc:
                self.warnings.append(f"unreadable {event.kind} event: {exc!r}")  # a last resort: handlers check

    def _on_config(self, e: ev.ConfigEvent) -> None:
        d = e.distill or {}
        self.method, self.schedule = name(d.get("method")), name(d.get("schedule"))
        self.n_from, self.n_to = count(d.get("n_from")), count(d.get("n_to"))
        self.total_updates = count(d.get("updates"))
        self.stages = [st for st in e.stages or [] if isinstance(st, dict)]
        self.threads = e.threads
        self.quality_every = count(d.get("quality_every"), None)

    def _on_stage(self, e: ev.StageEvent) -> None:
        self.stage = {"index": e.index, "steps": e.steps, "target_steps": e.target_steps, "updates": e.updates,
                      "method": e.method if e.method is not None else self.method}
        start = self.update + 1  # the event comes just before the stage's first update
        if not self.stage_starts or start > self.stage_starts[-1]:
            self.stage_starts.append(start)
        if not self.finest_grid:  # until the first histogram event: empty bars over the finest grid
            steps = count(self.stages[0].get("steps"), e.steps) if self.stages else e.steps
            self.histogram = [0] * steps if steps <= MAX_TIMESTEPS else []

    def _on_loss(self, e: ev.LossEvent) -> None:
        if e.update is None:  # a train run's (counted in steps): nothing this screen shows
            return
        self.update = e.update
        if e.nfe is not None:
            self.nfe = e.nfe
        if plottable(e.loss):  # None: a skipped update; NaN, inf or absurd: a gap too
            self.updates.append(self.update)
            self.losses.append(float(e.loss))
            self.times.append(e.time or 0.0)

    def _on_histogram(self, e: ev.HistogramEvent) -> None:
        if len(e.per_index) <= MAX_TIMESTEPS and len(e.finest_grid) <= MAX_TIMESTEPS:  # no grid is finer
            self.finest_grid, self.histogram = list(e.finest_grid), list(e.per_index)

    def _on_samples(self, e: ev.SamplesEvent) -> None:
        if e.update is None:
            return
        preview = Preview(e.update, Path(e.path), e.label or f"update {e.update}")
        self.previews = [p for p in self.previews if p.update != preview.update] + [preview]

    def _on_snapshot(self, e: ev.SnapshotEvent) -> None:
        self.snapshots[e.steps] = Path(e.path)

    def _on_quality(self, e: ev.QualityEvent) -> None:
        if plottable(e.psnr):
            self.quality.append((e.update, e.steps, float(e.psnr)))

    def _on_stage_end(self, e: ev.StageEndEvent) -> None:
        """The run jumps to its stage's last update: the next stage starts after it, and the speed is measured
        anew (the skipped updates took no time)."""
        stage = self.stage if self.stage is not None and self.stage["target_steps"] == e.steps else None
        name = f"{stage['steps']}→{e.steps}" if stage else f"→{e.steps}"
        self.stage_ends.append(StageEnd(e.update, e.steps, e.skipped, e.checks, name))
        self.update = e.update + e.skipped
        self.rate_from = len(self.updates)

    def _on_restore(self, e: ev.RestoreEvent) -> None:
        self.update = max(self.update, e.update)
        self.restores.append((e.update, e.steps, float(e.psnr) if plottable(e.psnr) else None))

    def _on_resume(self, e: ev.ResumeEvent) -> None:
        """Updates after the checkpoint are done again: drop what the interrupted process logged for them."""
        if e.update is None:
            return
        self.update = e.update
        keep = sum(1 for u in self.updates if u <= self.update)
        del self.updates[keep:], self.losses[keep:], self.times[keep:]
        self.rate_from = keep
        self.previews = [p for p in self.previews if p.update <= self.update]
        self.stage_starts = [u for u in self.stage_starts if u <= self.update]  # later ones come again
        self.quality = [q for q in self.quality if q[0] <= self.update]
        self.stage_ends = [s for s in self.stage_ends if s.update <= self.update]
        self.restores = [r for r in self.restores if r[0] <= self.update]
        self.error, self.interrupted = None, False

    def _on_interrupted(self, e: ev.InterruptedEvent) -> None:
        self.interrupted = True

    def _on_warning(self, e: ev.WarningEvent) -> None:
        self.warnings.append(e.message)

    def _on_error(self, e: ev.ErrorEvent) -> None:
        self.error = e.message

    def _on_end(self, e: ev.EndEvent) -> None:
        if e.update is not None:
            self.update = e.update
        self.model = Path(e.model)
        wall = e.wall_seconds
        self.wall_seconds = float(wall) if plottable(wall) and wall >= 0 else None
        if e.nfe is not None:
            self.nfe = sum(e.nfe.values())

    # -- derived -------------------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.model is not None

    @property
    def first_preview(self) -> Preview | None:
        return self.previews[0] if self.previews else None

    @property
    def latest_preview(self) -> Preview | None:
        return self.previews[-1] if len(self.previews) > 1 else None

    def rate(self) -> float | None:
        """Updates per second over the last loss events (pauses inside the window lower it, as they should)."""
        n = min(len(self.times) - self.rate_from, RATE_WINDOW)
        if n < 2 or self.times[-1] <= self.times[-n]:
            return None
        return _positive((self.updates[-1] - self.updates[-n]) / (self.times[-1] - self.times[-n]))

    def average_rate(self) -> float | None:
        """Updates per second over a finished run's whole time."""
        return _positive(self.update / self.wall_seconds) if self.ended and self.wall_seconds else None

    def eta_seconds(self) -> float | None:
        rate = self.rate()
        if rate is None or self.ended or not self.total_updates:
            return None
        return _positive(max(0.0, (self.total_updates - self.update) / rate), zero=True)

    def stage_text(self) -> str:
        if self.stage is None:
            return "starting"
        of = f" ({self.stage['index'] + 1}/{len(self.stages)})" if self.stages else ""
        method = f" {self.stage['method'].upper()}" if self.method == "dsd+pd" else ""
        return f"{self.stage['steps']}→{self.stage['target_steps']}{method}{of}"

    def stage_end_lines(self) -> list[str]:
        """One line per early stage end, with the model the run went on from where a restore followed it."""
        lines = []
        for end in self.stage_ends:
            line = (f"stage {end.name} ended at update {end.update}: {end.checks} check{'s' * (end.checks != 1)} "
                    f"without a better model; {end.skipped} updates skipped")
            restore = restore_of(end, self.restores)
            if restore is not None:
                line += "; continuing from its best" + (f" ({restore[2]:.2f} dB)" if restore[2] is not None else "")
            lines.append(line)
        return lines


HANDLERS: dict[type[ev.Event], Callable[[RunState, Any], None]] = {
    ev.ConfigEvent: RunState._on_config, ev.StageEvent: RunState._on_stage, ev.LossEvent: RunState._on_loss,
    ev.HistogramEvent: RunState._on_histogram, ev.SamplesEvent: RunState._on_samples,
    ev.SnapshotEvent: RunState._on_snapshot, ev.QualityEvent: RunState._on_quality,
    ev.StageEndEvent: RunState._on_stage_end, ev.RestoreEvent: RunState._on_restore,
    ev.ResumeEvent: RunState._on_resume,
    ev.InterruptedEvent: RunState._on_interrupted, ev.WarningEvent: RunState._on_warning,
    ev.ErrorEvent: RunState._on_error, ev.EndEvent: RunState._on_end,
}  # a kind without a handler (checkpoint, a newer dsd's) still counts as activity


def _positive(value: float, zero: bool = False) -> float | None:
    """A rate or a duration worth showing: finite and above zero (or zero, if `zero`); else None."""
    return value if math.isfinite(value) and (value > 0 or (zero and value == 0)) else None


def restore_of(end: StageEnd, restores: list[tuple[int, int, float | None]]) -> tuple[int, int, float | None] | None:
    """The restore that followed an early stage end (at its jump, to the stage's best), if it came yet."""
    return next((r for r in restores if r[1] == end.steps and r[0] >= end.update), None)


def smooth(values: list[float], alpha: float = 0.05) -> list[float]:
    """Bias-corrected exponential moving average, so the first points are not dragged towards zero."""
    out, avg, weight = [], 0.0, 0.0
    for v in values:
        avg = (1 - alpha) * avg + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(avg / weight)
    return out


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
