"""Shared by the run-folder tests: a tiny distillation run stopped at a checkpoint (to resume), a process that
holds a run's lock (torch-free, so it starts in a blink), and the `dsd distill --resume` arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dsd_core.checkpoint import file_sha256, load_model, save_model
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.runner import Distiller
from dsd_core.schedule import NoiseSchedule

from .conftest import tiny_unet

CFG = dict(schedule="iterative", n_from=8, n_to=2, updates=8, batch=4, lr=1e-3, sample_every=4, checkpoint_every=4)
HOLD = ("import sys, time; from dsd_core.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(600)")


def tiny_distiller(ckpt: Path, run_dir: Path, **kw) -> Distiller:
    return Distiller(load_model(ckpt), DistillConfig(**{**CFG, **kw}), run_dir, torch.device("cpu"), str(ckpt),
                     file_sha256(ckpt))


def stopped_run(root: Path) -> Path:
    """ROOT/run: a run of 8 updates stopped after update 5 (checkpoint at 4, preview at 4), resumable by the CLI
    (its config names ROOT/tiny.safetensors); made in-process, so it costs a second."""
    ckpt = save_model(root / "tiny.safetensors", tiny_unet(), NoiseSchedule("linear"), "eps", ema=True)
    run = root / "run"

    def stop(update, event):
        if update == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiny_distiller(ckpt, run).run_loop(stop)
    return run


def resume_args(run: Path) -> list:
    return ["distill", "--resume", run, "--threads", "1"]


def hold_lock(run: Path) -> subprocess.Popen:
    """A process that holds RUN's lock until killed (the caller kills it)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc
