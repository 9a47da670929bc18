"""Sampling speed: torch eager vs onnxruntime (and torch.compile with --compile) for the default 8-step
sampler, at batch 1 and 64, in one process with one thread budget; the table in docs/benchmarks.md.

    python benchmarks/sampling.py --threads 1 [--runs 20] [--compile] [--write]

Every backend draws the same images (same seed, same noise). Runs are interleaved — run i of every backend
before run i + 1 of any — and the median is reported, so a job that shares the machine for a while slows
all backends alike instead of one. Beside the speed: the model's FLOPs per image (convolutions and matmuls,
torch's FlopCounterMode) and the machine's measured float32 matmul FLOP/s at the same thread count, so the
distance to the limit is visible.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch
from quality import write_section  # noqa: E402  (benchmarks/ is the script's folder)
from torch.utils.flop_counter import FlopCounterMode

from dsd_core.checkpoint import load_model
from dsd_core.sampling import sample
from exporters.onnx_export import export_onnx
from exporters.runtime import OnnxSampler

START, END = "<!-- sampling:start -->", "<!-- sampling:end -->"
MODEL, STEPS = "digits-dsd8", 8


def flops_per_image(loaded, steps: int) -> float:
    """Multiply-adds ×2 of one network call at batch 1, times the steps (the DDIM arithmetic is negligible)."""
    cfg = loaded.model.config
    x = torch.zeros(1, cfg.in_channels, cfg.image_size, cfg.image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        loaded.model(x, torch.zeros(1, dtype=torch.long))
    return float(counter.get_total_flops() * steps)


def matmul_flops(n: int = 1024, repeats: int = 40) -> float:
    """Float32 FLOP/s of an n×n matmul with torch's current threads, from the fastest of `repeats` calls (a
    shared machine only ever slows a call down): the practical CPU limit."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times)


def backends(loaded, threads: int, folder: Path, compile_: bool) -> dict:
    """name → draw(batch) for every backend that works here."""
    path = export_onnx(load_model(MODEL), folder / "m.onnx", STEPS).path
    ort = OnnxSampler(path, threads=threads, provider="cpu")
    out = {
        "torch eager": lambda b: sample(loaded, STEPS, b, seed=0, batch=b),
        f"onnxruntime {onnxruntime.__version__} (CPU EP)": lambda b: ort.sample(b, seed=0, batch=b),
    }
    if compile_:
        compiled = load_model(MODEL)
        compiled.model = torch.compile(compiled.model, dynamic=False)
        out["torch.compile (inductor)"] = lambda b: sample(compiled, STEPS, b, seed=0, batch=b)
    return out


def measure(draws: dict, batch: int, runs: int) -> dict[str, float]:
    """Median seconds per call of each backend over `runs` interleaved calls (after 3 warm-up calls each)."""
    for name, draw in draws.items():
        start = time.perf_counter()
        for _ in range(3):
            draw(batch)
        print(f"  warm-up {name} batch {batch}: {time.perf_counter() - start:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in draws}
    for _ in range(runs):
        for name, draw in draws.items():
            start = time.perf_counter()
            draw(batch)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def table(results: dict, flops: float, peak: float) -> str:
    lines = ["| backend | batch | median ms/call | images/s | speed-up vs eager | GFLOP/s reached | of matmul peak |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for batch, medians in results.items():
        eager = medians["torch eager"]
        for name, seconds in medians.items():
            rate = batch / seconds
            lines.append(f"| {name} | {batch} | {1000 * seconds:.2f} | {rate:,.0f} | {eager / seconds:.2f}× "
                         f"| {rate * flops / 1e9:.2f} | {100 * rate * flops / peak:.1f} % |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--compile", action="store_true", help="add torch.compile (first compile: minutes)")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(MODEL)
    flops, peak = flops_per_image(loaded, STEPS), matmul_flops()
    with tempfile.TemporaryDirectory() as folder:
        draws = backends(loaded, args.threads, Path(folder), args.compile)
        results = {}
        for batch in (int(b) for b in args.batches.split(",")):
            results[batch] = measure(draws, batch, args.runs)
            peak = max(peak, matmul_flops())  # measured again between the batches: the best of all is the limit
    text = (
        f"Command: `python benchmarks/sampling.py --threads {args.threads} --runs {args.runs}"
        f"{' --compile' if args.compile else ''} --write` — {platform.machine()}, {args.threads} thread(s) for "
        f"torch {torch.__version__} and onnxruntime alike, other jobs possibly sharing the 2-core machine "
        f"(medians of {args.runs} interleaved runs). Model `{MODEL}`, {STEPS} DDIM steps, noise to uint8-ready "
        f"images; onnxruntime runs the exported unrolled sampler (`dsd export --onnx`). The model costs "
        f"{flops / 1e6:.1f} MFLOP per image ({STEPS} network calls); a 1024×1024 float32 matmul reaches "
        f"{peak / 1e9:.1f} GFLOP/s with the same threads (fastest call) — the practical limit the last two "
        f"columns compare with.\n\n"
        + table(results, flops, peak)
    )
    print(text)
    if args.write:
        write_section(text, START, END)


if __name__ == "__main__":
    main()
