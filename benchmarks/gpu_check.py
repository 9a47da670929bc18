"""The GPU check: train, distil, export and sample on CUDA, and print the numbers for docs/benchmarks.md.

    python benchmarks/gpu_check.py [--train-steps 300] [--updates 200] [--amp bf16] [--json OUT.json]

Prepared for a session that has a GPU (none of the sessions that wrote it had one; run it there). It uses
only public entry points: `Trainer` (conditional digits, label dropout 0.1), `Distiller` (DSD with guidance
w = 3 in student and teacher, iterative 16 → 8), `export_onnx` and `OnnxSampler` on onnxruntime's CUDA
provider (after `onnxruntime.preload_dlls()`, which `exporters.runtime` calls where torch's CUDA libraries
are installed). Reported: updates/s of training and distillation with and without autocast, sampling
images/s on torch and onnxruntime, peak GPU memory; each phase in a fresh temporary folder. Exits 1 with a
one-line reason when no CUDA device is present.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

DEVICE = torch.device("cuda")
SAMPLE_BATCHES = (64, 1024)


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def _reset_mem() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_mb() -> int | None:
    return round(torch.cuda.max_memory_allocated() / 2**20) if DEVICE.type == "cuda" else None


def train_phase(steps: int, amp: str, compile_net: bool) -> dict:
    from dsd_core.data import load_digits
    from dsd_core.models import UNetConfig
    from dsd_core.train import TrainConfig, Trainer

    images, labels = load_digits("train")
    cfg = TrainConfig(steps=steps, batch=128, sample_every=10**9, checkpoint_every=10**9, conditional=True,
                      amp=amp, compile=compile_net)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(images, UNetConfig(num_classes=10), cfg, tmp, DEVICE, labels=labels)
        _reset_mem()
        _sync()
        start = time.perf_counter()
        path = trainer.run_loop()
        _sync()
        seconds = time.perf_counter() - start
        kept = Path(tempfile.mkdtemp()) / "cond.safetensors"  # the model the later phases use
        kept.write_bytes(path.read_bytes())
    return {"phase": f"train (amp {amp}{', compiled' if compile_net else ''})", "steps": steps,
            "updates_per_s": round(steps / seconds, 1), "peak_mem_mb": _peak_mb(), "model": str(kept)}


def distill_phase(model: str, updates: int, amp: str) -> dict:
    from dsd_core.checkpoint import load_model
    from dsd_core.distill.config import DistillConfig
    from dsd_core.distill.runner import Distiller

    cfg = DistillConfig(n_from=16, n_to=8, updates=updates, batch=64, guidance=3.0, amp=amp, sample_every=10**9,
                        checkpoint_every=10**9)
    with tempfile.TemporaryDirectory() as tmp:
        distiller = Distiller(load_model(model, DEVICE), cfg, tmp, DEVICE)
        _reset_mem()
        _sync()
        start = time.perf_counter()
        distiller.run_loop()
        _sync()
        seconds = time.perf_counter() - start
    return {"phase": f"distill DSD w=3 (amp {amp})", "steps": updates, "updates_per_s": round(updates / seconds, 1),
            "nfe_per_update": 4 * cfg.batch, "peak_mem_mb": _peak_mb()}


def sample_phase(model: str) -> list[dict]:
    from dsd_core.checkpoint import load_model
    from dsd_core.classes import class_ids
    from dsd_core.sampling import sample
    from exporters.onnx_export import export_onnx
    from exporters.runtime import OnnxSampler

    loaded = load_model(model, DEVICE)
    rows = []
    for num in SAMPLE_BATCHES:
        classes = class_ids(None, num, 10)
        sample(loaded, 8, num, 0, num, DEVICE, classes=classes, guidance=3.0)  # warm-up
        _sync()
        start = time.perf_counter()
        sample(loaded, 8, num, 1, num, DEVICE, classes=classes, guidance=3.0)
        _sync()
        rows.append({"phase": f"sample torch, 8 steps w=3, batch {num}",
                     "images_per_s": round(num / (time.perf_counter() - start))})
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(load_model(model), Path(tmp) / "s.onnx", steps=8).path
        sampler = OnnxSampler(path, provider=DEVICE.type)
        for num in SAMPLE_BATCHES:
            sampler.sample(num, 0, class_labels=class_ids(None, num, 10), batch=num, guidance=3.0)
            start = time.perf_counter()
            sampler.sample(num, 1, class_labels=class_ids(None, num, 10), batch=num, guidance=3.0)
            rows.append({"phase": f"sample onnxruntime ({sampler.provider}), 8 steps w=3, batch {num}",
                         "images_per_s": round(num / (time.perf_counter() - start))})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--amp", default="bf16")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd training")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--cpu-smoke", action="store_true", help="run the same phases on the CPU (tiny, a test)")
    args = parser.parse_args()
    global DEVICE, SAMPLE_BATCHES
    if args.cpu_smoke:
        DEVICE, SAMPLE_BATCHES = torch.device("cpu"), (4,)
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print("no CUDA device: the GPU check needs one", file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu"
    rows = [{"phase": "device", "name": name, "torch": torch.__version__}]
    trained = train_phase(args.train_steps, "off", False)
    rows += [trained, train_phase(args.train_steps, args.amp, False)]
    if args.compile:
        rows.append(train_phase(args.train_steps, args.amp, True))
    rows += [distill_phase(trained["model"], args.updates, "off"),
             distill_phase(trained["model"], args.updates, args.amp)]
    rows += sample_phase(trained["model"])
    for row in rows:
        print(" | ".join(f"{k} {v}" for k, v in row.items() if k != "model"))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
