"""kill -9 a real `dsd distill` process at six points (between checkpoints, right after one, halfway through
writing the state, a snapshot and the final model, and with a torn event line), resuming after each: the run
completes bit-identical to an uninterrupted one, no temp file survives and the event log stays parseable.

One run directory goes through all the kills in turn, so the test costs seven process starts (~1 min here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from typer.testing import CliRunner

from dsd_core.atomic import PAUSE_ENV
from dsd_core.checkpoint import load_tensors
from dsd_core.runs import read_events
from dsd_tui.cli import app

ARGS = ["--schedule", "iterative", "--from", "8", "--to", "2", "--updates", "32", "--batch", "4",
        "--checkpoint-every", "4", "--sample-every", "10", "--threads", "1"]
DSD = [sys.executable, "-c", "from dsd_tui.cli import main; main()"]
TIMEOUT_S = 90


def start(args: list[str], pause_write: str = "") -> subprocess.Popen:
    env = {**os.environ, "NO_COLOR": "1", PAUSE_ENV: f"{pause_write}:60" if pause_write else ""}
    return subprocess.Popen(DSD + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_until(proc: subprocess.Popen, condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (code {proc.returncode}) before {what}: {proc.stdout.read()!r}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}: {proc.communicate()[0]!r}")
        time.sleep(0.02)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def last_update(run: Path, kind: str = "loss") -> int:
    if not (run / "events.jsonl").exists():
        return 0
    events = [e for e in read_events(run / "events.jsonl") if e["event"] == kind]
    return events[-1]["update"] if events else 0


def temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def test_kill_nine_at_six_points_then_resume_is_bit_identical(tiny_ckpt, tmp_path):
    reference = tmp_path / "reference"
    result = CliRunner().invoke(app, ["distill", "--model", str(tiny_ckpt), *ARGS, "--run-dir", str(reference)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    state = run / "checkpoints" / "state.safetensors"
    first = ["distill", "--model", str(tiny_ckpt), *ARGS, "--run-dir", str(run)]
    resume = ["distill", "--resume", str(run), "--threads", "1"]  # bit-identical needs the same thread count

    def mid_write(name: str, folder: Path):
        return lambda: any(p.stat().st_size > 0 for p in folder.glob(f".{name}.*.tmp"))

    kills = [  # (what to wait for, file whose write pauses halfway, what the kill must leave behind)
        (lambda: last_update(run) >= 6, "", "between checkpoints"),
        (lambda: last_update(run, "checkpoint") >= 12, "", "right after a checkpoint"),
        (mid_write("state.safetensors", run / "checkpoints"), "state.safetensors", "mid state write"),
        (mid_write("model-4steps.safetensors", run), "model-4steps.safetensors", "mid snapshot write"),
        (lambda: last_update(run) >= 27, "", "torn event line"),
        (mid_write("model.safetensors", run), "model.safetensors", "mid final-model write"),
    ]
    for i, (condition, pause, what) in enumerate(kills):
        proc = start(first if i == 0 else resume, pause)
        wait_until(proc, condition, what)
        before = state.read_bytes() if state.exists() else None
        kill(proc)
        if pause:  # the kill landed halfway through a write: a temp file, and the old file intact
            assert temp_files(run), what
            assert not (run / pause).exists() or load_tensors(run / pause)
            assert before is None or state.read_bytes() == before
        if what == "torn event line":
            with open(run / "events.jsonl", "a") as f:
                f.write('{"event": "loss", "upd')
        load_tensors(state)  # every kill leaves a loadable checkpoint
    proc = start(resume)
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, out

    for name in ("model.safetensors", "model-4steps.safetensors"):
        a, _ = load_tensors(reference / name)
        b, _ = load_tensors(run / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert temp_files(run) == []
    lines = (run / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line parses: the torn one was cut on resume
    assert sum(e["event"] == "resume" for e in events) == len(kills) and events[-1]["event"] == "end"
