"""The distillation runs under a folder, newest first, with how far each got (for the home screen)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dsd_core.runs import STATE_FILE

from .process import RunProcess

TAIL_BYTES = 16384


@dataclass(frozen=True)
class RecentRun:
    path: Path
    method: str
    schedule: str
    steps: str
    update: int
    updates: int
    status: str  # running, finished, failed, stopped
    checkpointed: bool = False

    @property
    def resumable(self) -> bool:
        """`dsd distill --resume` needs a checkpoint to start from."""
        return self.status in ("stopped", "failed") and self.checkpointed


def _last_events(path: Path) -> list[dict]:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - TAIL_BYTES))
            lines = f.read().splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return events


def describe(run_dir: Path) -> RecentRun | None:
    try:
        config = json.loads((run_dir / "config.json").read_text())
        d = config["distill"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if config.get("command") != "distill":
        return None
    update, status = 0, "stopped"
    for event in _last_events(run_dir / "events.jsonl"):
        update = int(event.get("update", update) or update)
        if event.get("event") == "end":
            status = "finished"
        elif event.get("event") == "error":
            status = "failed"
        elif event.get("event") == "resume":
            status = "stopped"
    if status != "finished" and RunProcess.find(run_dir) is not None:
        status = "running"
    return RecentRun(run_dir, d.get("method", "?"), d.get("schedule", "?"), f"{d.get('n_from')}→{d.get('n_to')}",
                     update, int(d.get("updates", 0)), status,
                     (run_dir / "checkpoints" / STATE_FILE).is_file())


def recent_runs(root: Path, limit: int = 20) -> list[RecentRun]:
    """Distillation runs in `root`, most recently touched first."""
    try:
        dirs = [p for p in Path(root).iterdir() if (p / "config.json").is_file()]
    except OSError:
        return []

    def touched(p: Path) -> float:
        events = p / "events.jsonl"
        return (events if events.exists() else p / "config.json").stat().st_mtime

    runs = (describe(p) for p in sorted(dirs, key=touched, reverse=True))
    return [r for r in runs if r is not None][:limit]
