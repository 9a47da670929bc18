"""Ctrl-C during `dsd distill`: the update in flight finishes, a checkpoint is written, the last line says how
to resume, the exit code is 130; resuming ends bit-identical to a run never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

from dsd_core.checkpoint import load_tensors
from dsd_core.runs import read_events

from .reliability_helpers import dsd

ARGS = ["--schedule", "iterative", "--from", "8", "--to", "2", "--updates", "40", "--batch", "4",
        "--checkpoint-every", "1000", "--sample-every", "1000", "--threads", "1"]


def test_ctrl_c_checkpoints_and_says_how_to_resume(tiny_ckpt, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", "from dsd_tui.cli import main; main()", "distill", "--model",
                             str(tiny_ckpt), *ARGS, "--run-dir", str(run)],
                            env={**os.environ, "NO_COLOR": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 90
    events = run / "events.jsonl"
    while not events.exists() or not any(e["event"] == "loss" for e in read_events(events)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    stopped = [e for e in read_events(run / "events.jsonl") if e["event"] == "interrupted"]
    assert len(stopped) == 1
    update = stopped[0]["update"]
    assert 1 <= update < 40
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last == f"interrupted: checkpoint at update {update} saved; resume with: dsd distill --resume {run}"
    assert "Traceback" not in err
    _, meta = load_tensors(run / "checkpoints" / "state.safetensors")
    assert meta["update"] == update  # the checkpoint is the stop, not an earlier one (there was none)

    assert dsd("distill", "--resume", run, "--threads", 1).exit_code == 0
    straight = tmp_path / "straight"
    assert dsd("distill", "--model", tiny_ckpt, *ARGS, "--run-dir", straight).exit_code == 0
    a, _ = load_tensors(straight / "model.safetensors")
    b, _ = load_tensors(run / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
