"""A run directory: `config.json`, an append-only `events.jsonl`, `checkpoints/` and `samples/`.

Front ends follow a run by reading its event log, one JSON object per line (typed in `dsd_core.events`), so the
log is flushed per event. A run writes only inside its folder: files written in place are opened without following
links, whole files are replaced by a rename (which replaces a link), and linked subfolders are refused.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

from . import __version__, events
from .atomic import atomic_write_bytes, open_own_file, stale_temp_files
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


class RunDir(RunPaths):
    """Creates (or reopens, for resume) the folders of a run and appends its events."""

    def __init__(self, root: str | Path):
        super().__init__(root)
        self.check_links()
        try:
            for folder in (self.root, self.checkpoints, self.samples):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DsdError(f"cannot create run folder {self.root}: {exc.strerror or exc}") from None

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
        atomic_write_bytes(self.config_path, json.dumps(config, indent=2).encode())

    def event(self, kind: str, **fields) -> None:
        """Appends the event of that kind; a misspelt kind or field is a TypeError, before anything is written."""
        self.write(events.make(kind, **fields))

    def write(self, event: events.Event) -> None:
        """Appends `event`, stamped with the time now unless it has one."""
        if event.time is None:
            event = replace(event, time=round(time.time(), 3))
        line = events.to_line(event)
        try:
            with os.fdopen(open_own_file(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a") as f:
                f.write(line + "\n")
        except OSError as exc:
            raise DsdError(f"cannot append to {self.events_path}: {exc.strerror or exc}") from None


REQUIRED = {"distill": ("distill", "base_model"), "train": ("train", "data_spec", "model_config")}


def read_run_config(root: str | Path, command: str) -> dict:
    """The config.json of a run folder that `command` made (to resume it), or a one-line error."""
    path = RunPaths(root).config_path
    if not path.is_file():
        raise DsdError(f"{root} is not a run folder (no config.json)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise DsdError(f"{path} is corrupt") from None
    if not isinstance(config, dict):
        raise DsdError(f"{path} is corrupt")
    if config.get("command") != command:
        raise DsdError(f"{root} holds a {config.get('command', 'unknown')} run, not a {command} run")
    if config.get("version") != __version__:
        raise DsdError(f"{root} was written by dsd {config.get('version', 'of an unknown version')}, this is dsd "
                       f"{__version__}: resume it with that version, or start a new run")
    missing = [k for k in REQUIRED.get(command, ()) if k not in config]
    if missing:
        raise DsdError(f"{path} is incomplete (no {', '.join(missing)})")
    return config


def read_events(path: str | Path) -> list[dict]:
    """Every readable event of a log as its line's dict, for callers that index by key; new code reads typed
    events with `dsd_core.events.read_events`."""
    return [events.to_dict(e) for e in events.read_events(path)]
