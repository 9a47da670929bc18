"""The distillation runs under a folder, newest first, with how far each got (for the home screen)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dsd_core import events as ev
from dsd_core.run_lock import holder
from dsd_core.runs import RunPaths

from .process import RunProcess
from .runstate import count, name

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
    pid: int | None = None  # of the process writing it, when it is running

    @property
    def resumable(self) -> bool:
        """`dsd distill --resume` needs a checkpoint to start from."""
        return self.status in ("stopped", "failed") and self.checkpointed


def _last_events(paths: RunPaths) -> list[ev.Event]:
    try:
        return ev.read_events(paths.events_path, last_bytes=TAIL_BYTES)
    except OSError:
        return []


def describe(run_dir: Path) -> RecentRun | None:
    paths = RunPaths(run_dir)
    try:
        config = json.loads(paths.config_path.read_text())
        d = config["distill"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(config, dict) or not isinstance(d, dict) or config.get("command") != "distill":
        return None  # the config is as untrusted as the event log: anything but a distill run's dict is skipped
    update, status = 0, "stopped"
    for event in _last_events(paths):
        update = getattr(event, "update", None) or update  # distill events count updates
        if isinstance(event, ev.EndEvent):
            status = "finished"
        elif isinstance(event, ev.ErrorEvent):
            status = "failed"
        elif isinstance(event, ev.ResumeEvent):
            status = "stopped"
    pid = None
    if (who := holder(run_dir)) is not None:  # a process holds its lock: it writes the run, whatever its events say
        status, pid = "running", who.pid
    elif status != "finished" and (found := RunProcess.find(run_dir)) is not None:
        status, pid = "running", found.pid
    return RecentRun(run_dir, name(d.get("method")) or "?", name(d.get("schedule")) or "?",
                     f"{count(d.get('n_from'), '?')}→{count(d.get('n_to'), '?')}", update, count(d.get("updates")),
                     status, paths.state_path.is_file(), pid)


def recent_runs(root: Path, limit: int = 20) -> list[RecentRun]:
    """Distillation runs in `root`, most recently touched first."""
    try:
        dirs = [p for p in Path(root).iterdir() if RunPaths(p).config_path.is_file()]
    except OSError:
        return []

    def touched(p: Path) -> float:
        paths = RunPaths(p)
        return (paths.events_path if paths.events_path.exists() else paths.config_path).stat().st_mtime

    runs = (describe(p) for p in sorted(dirs, key=touched, reverse=True))
    return [r for r in runs if r is not None][:limit]
