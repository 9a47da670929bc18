"""The events of a run's `events.jsonl`, typed: one frozen dataclass per kind, one writer, one reader.

A line is `{"event": KIND, "time": UNIX_SECONDS, **fields}`, keys in the class's field order. Train and distill
share one class per kind: train events count `step`, distill events count `update`, and a field that only one
command writes is optional (None, and then absent from the line; two nulls mean something and are written, as
before: a skipped distill update's `loss`, and a self-distilling train interval's `sd_loss`). One class per kind
keeps the log's own vocabulary (fourteen kinds, fourteen classes) and lets a front end handle both commands with one
handler; the writer's lines are byte for byte those of before (tests/test_events.py).

Reading is forgiving where writing is strict: building an event with a misspelt field fails at once, while a
line that is not JSON, torn, or has a field missing or of the wrong type is skipped; an unknown kind (a newer
dsd) is kept as an `UnknownEvent`, and unknown fields of a known kind are ignored. Torch-free: the TUI reads it.

A log is untrusted input (anyone can write one, and `--attach` shows it): every int of an event is a count or
an index, so one that is negative or has more than 64 bits (Python's JSON reads 10⁴⁰⁰ as an int) is of the
wrong type, and so is a time that is not finite. Other floats may be NaN or infinite (a diverging train run
logs a NaN mean loss; Python's JSON reads `1e400` as inf): kept as written, for readers to skip.
"""

from __future__ import annotations

import json
import math
import types
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

NULLABLE = {"nullable": True}  # a required field that may be null (written as null, not left out)
WITH_SD = {"written_with": "sd_nfe"}  # null, not left out, in a self-distilling train run's loss events
COUNT_LIMIT = 2**63  # every int field is a count or an index in [0, 2⁶³): no run counts further


class EventError(ValueError):
    """A line that does not make an event of its kind (a field missing, of the wrong type, or unknown)."""


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = ""
    time: float | None = None  # set by the writer; None only for an event not written yet


@dataclass(frozen=True, kw_only=True)
class ConfigEvent(Event):
    """The run's config.json (train adds `parameters`), first in a new run's log."""

    kind: ClassVar[str] = "config"
    command: str | None = None
    version: str | None = None
    threads: int | None = None
    base_model: str | None = None
    base_sha256: str | None = None
    distill: dict | None = None
    data: str | None = None
    data_spec: str | None = None
    num_images: int | None = None
    stages: list[dict] | None = None
    model_config: dict | None = None
    train: dict | None = None
    parameters: int | None = None


@dataclass(frozen=True, kw_only=True)
class ResumeEvent(Event):
    """A resume from the checkpoint at this step/update: later logged progress is done again."""

    kind: ClassVar[str] = "resume"
    step: int | None = None
    update: int | None = None


@dataclass(frozen=True, kw_only=True)
class StageEvent(Event):
    """A distillation stage (steps → target_steps over `updates` updates) starts."""

    kind: ClassVar[str] = "stage"
    index: int
    steps: int
    method: str | None = None
    target_steps: int
    updates: int
    teacher_first: bool | None = None  # a DSD stage whose teacher takes the first half-step too (3 NFE)


@dataclass(frozen=True, kw_only=True)
class LossEvent(Event):
    """A train log interval (mean loss) or one distill update (loss None: skipped as non-finite)."""

    kind: ClassVar[str] = "loss"
    step: int | None = None
    update: int | None = None
    stage: int | None = None
    method: str | None = None
    nfe: int | None = None
    loss: float | None = field(metadata=NULLABLE)
    grad_norm: float | None = None
    lr: float | None = None
    loss_by_pair: dict[str, float] | None = None
    skipped: bool | None = None
    sd_loss: float | None = field(default=None, metadata=WITH_SD)  # None: no self-distill update in the interval
    sd_nfe: int | None = None
    histogram: dict | None = None


@dataclass(frozen=True, kw_only=True)
class HistogramEvent(Event):
    """How often each step index of the finest grid was trained so far."""

    kind: ClassVar[str] = "histogram"
    update: int | None = None
    finest_grid: list[int]
    per_index: list[int]
    per_timestep: dict[str, int] | None = None


@dataclass(frozen=True, kw_only=True)
class SamplesEvent(Event):
    """A preview grid was saved."""

    kind: ClassVar[str] = "samples"
    step: int | None = None
    update: int | None = None
    path: str
    label: str | None = None


@dataclass(frozen=True, kw_only=True)
class SnapshotEvent(Event):
    """A stage's intermediate distilled model was saved."""

    kind: ClassVar[str] = "snapshot"
    update: int | None = None
    steps: int
    path: str


@dataclass(frozen=True, kw_only=True)
class QualityEvent(Event):
    """The run's data-free agreement check: the EMA model at `steps` sampling steps against the starting
    model at the finest grid, from the same fixed noises (mean squared error of [−1, 1] images, and PSNR)."""

    kind: ClassVar[str] = "quality"
    update: int
    steps: int
    mse: float
    psnr: float
    best: bool = False  # the best agreement at this step count so far: saved as model-best-Nsteps
    fd: float | None = None  # with --quality-fd: digits-classifier scores of the EMA model's samples
    precision: float | None = None
    recall: float | None = None


@dataclass(frozen=True, kw_only=True)
class StageEndEvent(Event):
    """A stage ended before its budget: `checks` agreement checks in a row found no better model
    (`--stop-when-worse`); the run jumps `skipped` updates to the next stage."""

    kind: ClassVar[str] = "stage_end"
    update: int
    steps: int
    skipped: int
    checks: int


@dataclass(frozen=True, kw_only=True)
class RestoreEvent(Event):
    """At a stage's end the run went back to its best-agreeing snapshot (model and EMA, fresh optimizer): the
    next stage, and the shipped model, build on it rather than on the stage's last weights."""

    kind: ClassVar[str] = "restore"
    update: int
    steps: int
    psnr: float | None = field(default=None, metadata=NULLABLE)
    path: str


@dataclass(frozen=True, kw_only=True)
class CheckpointEvent(Event):
    """A resumable state was saved."""

    kind: ClassVar[str] = "checkpoint"
    step: int | None = None
    update: int | None = None
    path: str


@dataclass(frozen=True, kw_only=True)
class WarningEvent(Event):
    kind: ClassVar[str] = "warning"
    update: int | None = None
    message: str


@dataclass(frozen=True, kw_only=True)
class ErrorEvent(Event):
    """The run gives up (the process then exits with an error)."""

    kind: ClassVar[str] = "error"
    update: int | None = None
    message: str


@dataclass(frozen=True, kw_only=True)
class InterruptedEvent(Event):
    """Stopped by Ctrl-C after a checkpoint."""

    kind: ClassVar[str] = "interrupted"
    step: int | None = None
    update: int | None = None


@dataclass(frozen=True, kw_only=True)
class EndEvent(Event):
    """The run finished; `model` is what it made (distill adds its NFE, skipped updates, time and updates run)."""

    kind: ClassVar[str] = "end"
    step: int | None = None
    update: int | None = None
    model: str
    nfe: dict[str, int] | None = None
    skipped: int | None = None
    wall_seconds: float | None = None
    updates_run: int | None = None  # distill: below `update` where stages ended early


@dataclass(frozen=True, kw_only=True)
class UnknownEvent(Event):
    """A kind this dsd does not know (written by a newer one): kept, so that it still counts as activity."""

    name: str
    values: dict = field(default_factory=dict)


KINDS: dict[str, type[Event]] = {cls.kind: cls for cls in (
    ConfigEvent, ResumeEvent, StageEvent, LossEvent, HistogramEvent, SamplesEvent, SnapshotEvent, QualityEvent,
    StageEndEvent, RestoreEvent, CheckpointEvent, WarningEvent, ErrorEvent, InterruptedEvent, EndEvent)}


def _spec(cls: type[Event]) -> list[tuple[str, Any, bool, dict]]:
    """(name, type, required, metadata) of each field but `time`, in line order."""
    hints = get_type_hints(cls)
    return [(f.name, hints[f.name], f.default is MISSING and f.default_factory is MISSING, dict(f.metadata))
            for f in fields(cls) if f.name != "time"]


def _written(event: Event, name: str, required: bool, meta: dict) -> bool:
    """Whether the line has the field: an optional one that is None is left out, unless null means something."""
    with_field = meta.get("written_with")
    return (getattr(event, name) is not None or required or meta.get("nullable", False)
            or (with_field is not None and getattr(event, with_field) is not None))


SPECS = {cls: _spec(cls) for cls in KINDS.values()}


def is_count(value: Any) -> bool:
    """Whether a JSON value is a count or an index: a whole number in [0, COUNT_LIMIT), not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < COUNT_LIMIT


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the annotated type (bool is not a number here; an int is a float). An int is a
    count: in [0, COUNT_LIMIT); as a float, it must convert to one (|n| < COUNT_LIMIT)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is int:
        return is_count(value)
    if hint is float:  # NaN and inf pass: see the module's note
        return isinstance(value, float) or (isinstance(value, int) and is_count(-value if value < 0 else value))
    if hint in (str, bool, dict, list):
        return isinstance(value, hint)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and _fits(v, args[1]) for k, v in value.items())
    return True


def make(kind: str, **values: Any) -> Event:
    """The event `RunDir.event(kind, **fields)` writes; an unknown kind or field is a TypeError (a bug)."""
    cls = KINDS.get(kind)
    if cls is None:
        raise TypeError(f"unknown event kind {kind!r}")
    return cls(**values)


def parse(obj: Any, strict: bool = False) -> Event:
    """The event of one decoded line, or EventError. `strict` also refuses unknown kinds and fields (tests)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        raise EventError("not an event object")
    kind, when = obj["event"], obj.get("time")
    if when is not None and not (_fits(when, float) and math.isfinite(when)):
        raise EventError(f"time is {when!r}")
    cls = KINDS.get(kind)
    if cls is None:
        if strict:
            raise EventError(f"unknown kind {kind!r}")
        return UnknownEvent(time=when, name=kind, values={k: v for k, v in obj.items() if k not in ("event", "time")})
    values = {}
    for name, hint, required, _ in SPECS[cls]:
        if name not in obj:
            if required:
                raise EventError(f"{kind} without {name}")
            continue
        if not _fits(obj[name], hint):
            raise EventError(f"{kind}'s {name} is {obj[name]!r}")
        values[name] = obj[name]
    if strict and (extra := set(obj) - set(values) - {"event", "time"}):
        raise EventError(f"{kind} with unknown fields {sorted(extra)}")
    return cls(time=when, **values)


def parse_line(line: bytes | str) -> Event | None:
    """The event of one line of a log; None for a line that is not one (torn, not JSON, malformed, nested
    deeper than Python's JSON reader recurses)."""
    try:
        return parse(json.loads(line))
    except (ValueError, UnicodeDecodeError, RecursionError):  # JSONDecodeError and EventError are ValueErrors
        return None


def to_dict(event: Event) -> dict:
    """The line's object: event, time, then the fields in order; an optional field that is None is left out."""
    if isinstance(event, UnknownEvent):
        body = event.values
    else:
        body = {name: getattr(event, name) for name, _, required, meta in SPECS[type(event)]
                if _written(event, name, required, meta)}
    head = {"event": event.name if isinstance(event, UnknownEvent) else event.kind}
    if event.time is not None:
        head["time"] = event.time
    return {**head, **body}


def to_line(event: Event) -> str:
    """The writer's format: one JSON object, no newline."""
    return json.dumps(to_dict(event))


def _complete_lines(data: bytes) -> list[bytes]:
    """The newline-terminated lines of `data` (a torn last line is not an event yet)."""
    return data[: data.rfind(b"\n") + 1].splitlines()


def read_events(path: str | Path, last_bytes: int | None = None) -> list[Event]:
    """The events of a whole log (or of about its last `last_bytes`), unreadable lines skipped; OSError if
    the log cannot be read."""
    with open(path, "rb") as f:
        start = 0
        if last_bytes is not None:
            start = max(0, f.seek(0, 2) - last_bytes)
            f.seek(max(0, start - 1))
        data = f.read()
    if start > 0:  # the line cut off at the start is not an event (unless the cut fell just after a newline)
        data = data[data.find(b"\n") + 1:] if b"\n" in data else b""
    return [e for e in map(parse_line, _complete_lines(data)) if e is not None]


class EventTail:
    """Follows a log as it grows: each call returns the events completed since the last one; a line still
    being written waits for its newline, and a log replaced by a shorter one is read again from the start."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.skipped = 0  # lines that were not events

    def read_new(self) -> list[Event]:
        try:
            with open(self.path, "rb") as f:
                if f.seek(0, 2) < self.offset:
                    self.offset = 0
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        lines = _complete_lines(data)
        self.offset += data.rfind(b"\n") + 1
        events = [parse_line(line) for line in lines]
        self.skipped += events.count(None)
        return [e for e in events if e is not None]
