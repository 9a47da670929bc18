"""A run directory: `config.json`, an append-only `events.jsonl`, `checkpoints/` and `samples/`.

Front ends follow a run by reading its event log, one JSON object per line (typed in `dsd_core.events`), so the
log is flushed per event. A run writes only inside its folder: files written in place are opened without following
links, whole files are replaced by a rename (which replaces a link), and linked subfolders are refused.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from . import __version__, events
from .atomic import atomic_write_bytes, open_own_file, stale_temp_files
from .checks import json_type
from .errors import DsdError

STATE_FILE = "state.safetensors"  # a run's resumable state, in RUN/checkpoints/


class RunPaths:
    """Where a run folder keeps what, without touching the disk (a front end looks at runs it does not write)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def state_path(self) -> Path:
        """The resumable state; a run without one cannot be resumed."""
        return self.checkpoints / STATE_FILE

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def onnx(self) -> Path:
        """Where the app exports the run's model to ONNX."""
        return self.root / "onnx"


_MADE_ON_START = contextvars.ContextVar("made_on_start", default=False)


@contextlib.contextmanager
def folders_made_on_start() -> Iterator[None]:
    """Run folders set up within are made only when their run starts (`ResumableLoop.owning`), not when the
    `RunDir` is: every check that a run's constructor makes after it (settings, data, the model) comes first,
    so a run that fails one leaves no empty folder behind."""
    token = _MADE_ON_START.set(True)
    try:
        yield
    finally:
        _MADE_ON_START.reset(token)


class RunDir(RunPaths):
    """The folders of a run (new, or reopened to resume) and its event log. `create` (default: yes, unless
    within `folders_made_on_start`) makes them now; else only a check that they could be made comes now, and
    `create()` when the run starts or first writes."""

    def __init__(self, root: str | Path, create: bool | None = None):
        super().__init__(root)
        self.created = False
        self.check_links()
        self.check_creatable()
        if not _MADE_ON_START.get() if create is None else create:
            self.create()

    def check_creatable(self) -> None:
        """The nearest existing folder on the way to the run folder must be a folder that may be written: the
        errors `create()` would meet, found now, before any work."""
        existing = next((p for p in (self.root, *self.root.parents) if p.exists()), self.root)
        if existing == self.root:
            why = None if existing.is_dir() else "File exists"
        elif not existing.is_dir():
            why = "Not a directory"
        else:
            why = None if os.access(existing, os.W_OK | os.X_OK) else "Permission denied"
        if why:
            raise DsdError(f"cannot create run folder {self.root}: {why}")

    def create(self) -> None:
        """Make the run folder and its subfolders (once; they may exist already)."""
        if self.created:
            return
        self.check_links()
        try:
            for folder in (self.root, self.checkpoints, self.samples):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DsdError(f"cannot create run folder {self.root}: {exc.strerror or exc}") from None
        self.created = True

    def check_links(self) -> None:
        """Refuse subfolders that are symbolic links: every file written there would land where the link
        points, outside the run folder (the run folder itself may be reached through a link of the user's).
        The event log is checked here too, so that a run refuses a linked one before it writes anything."""
        for folder in (self.checkpoints, self.samples):
            if folder.is_symlink():
                raise DsdError(f"{folder} is a symbolic link; dsd writes only inside the run folder: replace the "
                               "link with a folder")
        if self.events_path.is_symlink():
            raise DsdError(f"{self.events_path} is a symbolic link; dsd never writes through a link in a run "
                           "folder: remove the link")

    def repair(self) -> None:
        """Undo what a kill can leave: temp files of unfinished writes, and a torn last event line (cut off,
        so that the next event starts a line of its own instead of gluing onto the fragment). Call it before
        resuming, holding the run's lock (another writer's temp file would go too)."""
        self.check_links()
        for folder in (self.root, self.checkpoints, self.samples):
            for tmp in stale_temp_files(folder):
                tmp.unlink(missing_ok=True)
        try:
            with os.fdopen(open_own_file(self.events_path, os.O_RDWR), "rb+") as f:
                data = f.read()
                if data and not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise DsdError(f"cannot repair {self.events_path}: {exc.strerror or exc}") from None

    def write_config(self, config: dict) -> None:
        self.create()
        atomic_write_bytes(self.config_path, json.dumps(config, indent=2).encode())

    def event(self, kind: str, **fields) -> None:
        """Appends the event of that kind; a misspelt kind or field is a TypeError, before anything is written."""
        self.write(events.make(kind, **fields))

    def write(self, event: events.Event) -> None:
        """Appends `event`, stamped with the time now unless it has one."""
        if event.time is None:
            event = replace(event, time=round(time.time(), 3))
        line = events.to_line(event)
        self.create()
        try:
            with os.fdopen(open_own_file(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a") as f:
                f.write(line + "\n")
        except OSError as exc:
            raise DsdError(f"cannot append to {self.events_path}: {exc.strerror or exc}") from None


# what a run's config.json must hold for `command` to resume it, beside its command, version and threads
REQUIRED = {"distill": {"distill": dict, "base_model": str}, "train": {"train": dict, "data_spec": str,
                                                                       "model_config": dict}}


def read_run_config(root: str | Path, command: str) -> dict:
    """The config.json of a run folder that `command` made (to resume it), or a one-line error. Its sections
    are checked here for their types; the settings in them by `checks.config_from_file`, like flags."""
    path = RunPaths(root).config_path
    if not path.is_file():
        raise DsdError(f"{root} is not a run folder (no config.json)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DsdError(f"{path} is corrupt") from None
    if not isinstance(config, dict):
        raise DsdError(f"{path} is corrupt: it holds {json_type(config)}, not a JSON object")
    if config.get("command") != command:
        raise DsdError(f"{root} holds a {config.get('command', 'unknown')} run, not a {command} run")
    if config.get("version") != __version__:
        raise DsdError(f"{root} was written by dsd {config.get('version', 'of an unknown version')}, this is dsd "
                       f"{__version__}: resume it with that version, or start a new run")
    missing = [k for k in REQUIRED.get(command, ()) if k not in config]
    if missing:
        raise DsdError(f"{path} is incomplete (no {', '.join(missing)})")
    for key, kind in REQUIRED.get(command, {}).items():
        if not isinstance(config[key], kind):
            raise DsdError(f"{path}: {key} must be a JSON {'object' if kind is dict else 'string'}, not "
                           f"{json_type(config[key])}")
    threads = config.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise DsdError(f"{path}: threads must be a whole number ≥ 1 or null, got {str(threads)[:40]!r}")
    return config


def read_events(path: str | Path) -> list[dict]:
    """Every readable event of a log as its line's dict, for callers that index by key; new code reads typed
    events with `dsd_core.events.read_events`."""
    return [events.to_dict(e) for e in events.read_events(path)]
