"""Data-parallel DSD: two gloo processes of batch B end where one process of batch 2B ends."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from dsd_core import distributed as ddp
from dsd_core.checkpoint import LoadedModel, load_model
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.runner import Distiller
from dsd_core.models import UNet, UNetConfig
from dsd_core.runs import read_events
from dsd_core.schedule import NoiseSchedule

TINY = UNetConfig(image_size=8, base_channels=16, channel_mults=(1, 2), attention_levels=(), num_groups=8,
                  num_classes=3)
CFG = dict(method="dsd", schedule="iterative", n_from=8, n_to=2, updates=6, batch=4, lr=1e-3, seed=3,
           sample_every=1000, checkpoint_every=1000, histogram_every=1, guidance=2.0,
           ema_decay=0.5)


def base() -> LoadedModel:
    torch.manual_seed(0)
    model = UNet(TINY)
    with torch.no_grad():  # a non-zero output layer, so that the loss has a gradient everywhere
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return LoadedModel(model, NoiseSchedule("linear"), "eps")


def _rank(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info, device = ddp.setup(torch.device("cpu"))
    Distiller(base(), DistillConfig(**CFG), run_dir, device, "tiny", "0", info).run_loop()
    ddp.teardown(info)
    # Everything this test checks is on disk now. Leave without interpreter finalisation: in two of ~10
    # fresh-clone CI runs a rank aborted there ("terminate called without an active exception", torch's C++
    # teardown after the group was destroyed), never reproduced locally. The user path's exit status, through
    # torchrun, is still checked by test_dsd_distill_nproc_starts_torchrun_and_rank_zero_writes.
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process_with_the_combined_batch(tmp_path):
    mp.start_processes(_rank, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True,
                       start_method="spawn")
    one = Distiller(base(), DistillConfig(**{**CFG, "batch": 8}), tmp_path / "one", torch.device("cpu"), "tiny", "0")
    one.run_loop()
    two = load_model(tmp_path / "ddp" / "model.safetensors")
    ref = one.ema.shadow.state_dict()
    diff = max(float((two.model.state_dict()[k] - v).abs().max()) for k, v in ref.items())
    moved = max(float((base().model.state_dict()[k] - v).abs().max()) for k, v in ref.items())
    assert moved > 1e-3  # the updates did change the weights …
    assert diff < 2e-2 * moved  # … and two processes changed them as one does (Adam amplifies float noise)
    prov = two.meta["provenance"]
    assert prov["processes"] == 2 and prov["nfe_per_update"] == 8 * 4  # 8 trajectories, 4 NFE each (guided)
    assert prov["nfe_total"] == one.nfe["updates"] + one.nfe["warmup"]
    # rank 0 alone wrote the event log; its histogram counts both ranks' trajectories
    events = read_events(tmp_path / "ddp" / "events.jsonl")
    assert [e["event"] for e in events].count("end") == 1
    histogram = [e for e in events if e["event"] == "histogram"][-1]
    assert histogram["per_timestep"] == one.histogram.to_dict()["per_timestep"]
    assert sum(histogram["per_timestep"].values()) == 6 * 8
    losses = [e["loss"] for e in events if e["event"] == "loss"]
    ref_losses = [e["loss"] for e in read_events(tmp_path / "one" / "events.jsonl") if e["event"] == "loss"]
    assert losses == pytest.approx(ref_losses, rel=1e-4)


def test_dsd_distill_nproc_starts_torchrun_and_rank_zero_writes(tmp_path):
    """The CLI path: `dsd distill --nproc 2` re-runs itself under torchrun (gloo on the CPU)."""
    import subprocess
    import sys

    from dsd_core.checkpoint import save_model

    ckpt = save_model(tmp_path / "tiny.safetensors", base().model, NoiseSchedule("linear"), "eps", ema=True)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "dsd_tui.cli", "distill", "--model", str(ckpt), "--schedule", "naive", "--to", "2",
           "--updates", "2", "--batch", "2", "--guidance", "2", "--nproc", "2", "--threads", "1",
           "--run-dir", str(run_dir), "--sample-every", "100"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    loaded = load_model(run_dir / "model.safetensors")
    assert loaded.meta["provenance"]["processes"] == 2 and loaded.guidance == 2.0
    assert [e["event"] for e in read_events(run_dir / "events.jsonl")].count("config") == 1
