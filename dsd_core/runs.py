"""A run directory: `config.json`, an append-only `events.jsonl`, `checkpoints/` and `samples/`.

Front ends follow a run by reading its event log, one JSON object per line, so the log is flushed per event.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import __version__
from .atomic import atomic_write_bytes, stale_temp_files
from .errors import DsdError

STATE_FILE = "state.safetensors"  # a run's resumable state, in RUN/checkpoints/


class RunDir:
    """Creates (or reopens, for resume) the folders of a run and appends its events."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        try:
            for sub in ("", "checkpoints", "samples"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DsdError(f"cannot create run folder {self.root}: {exc.strerror or exc}") from None

    def repair(self) -> None:
        """Undo what a kill can leave: temp files of unfinished writes, and a torn last event line (cut off,
        so that the next event starts a line of its own instead of gluing onto the fragment). Call it before
        resuming, from the one process that writes the run (another writer's temp file would go too)."""
        for folder in (self.root, self.checkpoints, self.samples):
            for tmp in stale_temp_files(folder):
                tmp.unlink(missing_ok=True)
        try:
            with open(self.events_path, "rb+") as f:
                data = f.read()
                if data and not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise DsdError(f"cannot repair {self.events_path}: {exc.strerror or exc}") from None

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    def write_config(self, config: dict) -> None:
        atomic_write_bytes(self.root / "config.json", json.dumps(config, indent=2).encode())

    def event(self, kind: str, **fields) -> None:
        line = json.dumps({"event": kind, "time": round(time.time(), 3), **fields})
        try:
            with open(self.events_path, "a") as f:
                f.write(line + "\n")
        except OSError as exc:
            raise DsdError(f"cannot append to {self.events_path}: {exc.strerror or exc}") from None


REQUIRED = {"distill": ("distill", "base_model"), "train": ("train", "data_spec", "model_config")}


def read_run_config(root: str | Path, command: str) -> dict:
    """The config.json of a run folder that `command` made (to resume it), or a one-line error."""
    path = Path(root) / "config.json"
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
    """Every complete event of a log; a torn last line (a run killed mid-write) is ignored."""
    events = []
    for line in Path(path).read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
