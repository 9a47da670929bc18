"""Shared by the TUI tests: a catalog that needs no engine subprocess, waiting on app state, fake runs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from textual.widgets import Static

from dsd_tui.app import DsdApp
from dsd_tui.tui.catalog import Catalog
from dsd_tui.tui.process import RunProcess
from dsd_tui.tui.screens.sampler import SamplerScreen

CATALOG = Catalog(models=("digits", "digits-v", "digits-v-dsd8"), methods=("dsd-stage", "dsd", "tsd", "pd", "dsd+pd"),
                  schedules=("iterative", "naive", "gradual-linear", "gradual-exp"))


async def wait_for(pilot, condition, timeout: float = 60.0, what: str = "condition") -> None:
    """Let the app run until `condition()` holds (subprocesses need real time, not a fixed pause)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.1)
        await asyncio.sleep(0)


def grid_png(path: Path, seed: int) -> Path:
    """A preview grid as dsd_core.images.make_grid draws it (64 8×8 digits-like tiles)."""
    from dsd_core.images import make_grid

    rng = np.random.default_rng(seed)
    tiles = (rng.random((64, 8, 8, 1)) ** 3 * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_grid(tiles).save(path)
    return path


def write_finished_run(run_dir: Path, updates: int = 40, ended: bool = True) -> Path:
    """A run folder with a fixed event log (fixed times, so every derived number is deterministic)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    distill = {"method": "dsd", "schedule": "iterative", "n_from": 8, "n_to": 2, "updates": updates}
    stages = [{"steps": 8, "updates": updates // 2}, {"steps": 4, "updates": updates - updates // 2}]
    config = {"command": "distill", "threads": 1, "distill": distill, "stages": stages, "base_model": "digits"}
    (run_dir / "config.json").write_text(json.dumps(config))
    t0 = 1_700_000_000.0
    events = [{"event": "config", "time": t0, **config},
              {"event": "samples", "time": t0, "update": 0, "label": "undistilled",
               "path": str(grid_png(run_dir / "samples" / "update_0000000.png", 0))}]
    for u in range(1, updates + 1):
        if u == 1 or u == updates // 2 + 1:
            index = 0 if u == 1 else 1
            events.append({"event": "stage", "time": t0 + u, "index": index, "steps": stages[index]["steps"],
                           "target_steps": stages[index]["steps"] // 2, "updates": stages[index]["updates"],
                           "method": "dsd"})
        events.append({"event": "loss", "time": t0 + u / 4, "update": u, "stage": 8, "nfe": 8 * u,
                       "loss": 0.5 / (1 + u / 5) + 0.02 * (u % 3), "grad_norm": 1.0})
        if u % 20 == 0:
            events.append({"event": "histogram", "time": t0 + u / 4, "update": u,
                           "finest_grid": [999, 874, 749, 624, 499, 374, 249, 124],
                           "per_index": [u, 0, u, 0, u // 2, 0, u // 2, 0], "per_timestep": {}})
    events.append({"event": "samples", "time": t0 + updates / 4, "update": updates,
                   "path": str(grid_png(run_dir / "samples" / f"update_{updates:07d}.png", 1))})
    if ended:
        events.append({"event": "end", "time": t0 + updates / 4, "update": updates,
                       "model": str(run_dir / "model.safetensors"), "nfe": {"updates": 8 * updates, "warmup": 32},
                       "skipped": 0, "wall_seconds": updates / 4})
    with open(run_dir / "events.jsonl", "w") as f:
        for event in events:
            f.write(json.dumps(event) + "\n")
    return run_dir


class FakeSampler:
    """Stands in for exporters.runtime.OnnxSampler: fixed digits-like images for a seed."""

    provider, num_classes, image_shape = "CPUExecutionProvider", 0, (1, 8, 8)

    def __init__(self, path, threads=None, provider="auto"):
        self.steps = int(Path(path).stem.split("-")[-1].removesuffix("steps"))

    def sample(self, num, seed, class_labels=None):
        return (np.random.default_rng(seed).random((num, 1, 8, 8)) ** 3).astype(np.float32)


def use_fake_sampler(monkeypatch) -> None:
    """FakeSampler in place of the ONNX sampler, and a clock that makes every generation take 6 ms."""
    import exporters.runtime

    monkeypatch.setattr(exporters.runtime, "OnnxSampler", FakeSampler)
    ticks = itertools.count(step=0.006)
    monkeypatch.setattr(SamplerScreen, "clock", staticmethod(lambda: next(ticks)))


def fake_run(run_dir: Path, body: str) -> RunProcess:
    """A stand-in run process: writes a config event, then does `body`."""
    script = textwrap.dedent(f"""
        import json, sys, time
        with open({str(run_dir / "events.jsonl")!r}, "a") as f:
            f.write(json.dumps({{"event": "config", "time": time.time(),
                                "distill": {{"method": "dsd", "schedule": "naive", "n_from": 4, "n_to": 2,
                                            "updates": 10}}}}) + "\\n")
            f.write(json.dumps({{"event": "loss", "time": time.time(), "update": 1, "nfe": 8, "loss": 0.5}}) + "\\n")
    """) + textwrap.dedent(body)
    return RunProcess.start([sys.executable, "-c", script], run_dir)


def message(screen) -> str:
    return str(screen.query_one("#run-message", Static).render())


SLEEPER = """
import signal, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as `dsd` does: a shell's `&` may have ignored it
try:
    time.sleep(60)
except KeyboardInterrupt:
    print("interrupted"); sys.exit(130)
"""


async def open_once_started(app, pilot, run_dir: Path):
    """Open a run that another process writes, once its first update is in; its run screen."""
    await wait_for(pilot, lambda: (run_dir / "events.jsonl").exists(), what="the events")
    app.open_run(run_dir)
    await pilot.pause()
    screen = app.screen
    await wait_for(pilot, lambda: screen.state.update == 1, what="the first event")
    return screen


@contextlib.asynccontextmanager
async def attached_sleeper(tmp_path: Path):
    """A sleeping fake run started as if by another dsd-tui (not this app's child), opened in a fresh app once
    its first event is in: yields (pilot, its run screen, the run's process); the run dies afterwards."""
    started = fake_run(tmp_path / "r", SLEEPER)
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            yield pilot, await open_once_started(app, pilot, tmp_path / "r"), started
    finally:
        if started.popen.poll() is None:
            started.popen.kill()
        started.popen.wait(10)
