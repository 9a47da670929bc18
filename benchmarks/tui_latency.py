"""The TUI sampler's key-press latency: a screenful of images (24 by default) from a model's exported N-step
sampler through onnxruntime, at several thread counts, in one process; the table in docs/benchmarks.md.

    python benchmarks/tui_latency.py [--models emoji16-cond emoji16-cond-dsd4] [--steps 4] [--num 24]
                                     [--threads 1 2] [--runs 15] [--write]

A key press in the sampler (`dsd-tui sample`) runs exactly this call: `OnnxSampler.sample(num, seed,
class_labels=…)` with the file's default guidance (a conditional model exported with w ≠ 1 runs its network on
2 × num images per step). Runs are interleaved over the (model, threads) pairs and the median is reported, so a
job sharing the machine for a while slows every row alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime
from quality import write_section  # noqa: E402  (benchmarks/ is the script's folder)

from dsd_core.checkpoint import load_model
from exporters.onnx_export import export_onnx
from exporters.runtime import OnnxSampler

START, END = "<!-- tui-latency:start -->", "<!-- tui-latency:end -->"


def samplers(models: list[str], steps: int, threads: list[int], num: int, folder: Path) -> dict:
    """(model, threads) → a warmed-up OnnxSampler of the model's `steps`-step export with its default guidance."""
    out = {}
    for i, name in enumerate(models):
        path = export_onnx(load_model(name), folder / f"m{i}.onnx", steps).path
        for t in threads:
            sampler = OnnxSampler(path, threads=t, provider="cpu", batch=num)
            sampler.sample(num, 0, class_labels=0 if sampler.num_classes else None)  # first run on a shape: slow
            out[(name, t)] = sampler
    return out


def measure(draws: dict, num: int, runs: int) -> dict:
    """Median and fastest seconds per screenful of each sampler over `runs` interleaved calls, seeds 1…runs."""
    times: dict = {key: [] for key in draws}
    for seed in range(1, runs + 1):
        for key, sampler in draws.items():
            label = seed % sampler.num_classes if sampler.num_classes else None
            start = time.perf_counter()
            sampler.sample(num, seed, class_labels=label)
            times[key].append(time.perf_counter() - start)
    return {key: (statistics.median(t), min(t)) for key, t in times.items()}


def table(draws: dict, results: dict, num: int) -> str:
    lines = ["| model | steps | guidance w | network images per step | threads | median ms | fastest ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for (name, threads), (median, fastest) in results.items():
        sampler = draws[(name, threads)]
        w = sampler.default_guidance if sampler.num_classes else 1.0
        per_step = num * (2 if sampler.takes_guidance and w != 1.0 else 1)
        lines.append(f"| {name} | {sampler.steps} | {w:g} | {per_step} | {threads} | {1000 * median:.0f} "
                     f"| {1000 * fastest:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["emoji16-cond"], help="built-in names or checkpoints")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--num", type=int, default=24, help="images per key press")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="onnxruntime intra-op threads")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        draws = samplers(args.models, args.steps, args.threads, args.num, Path(folder))
        results = measure(draws, args.num, args.runs)
    text = (
        f"Command: `python benchmarks/tui_latency.py --models {' '.join(args.models)} --steps {args.steps} "
        f"--num {args.num} --threads {' '.join(map(str, args.threads))} --runs {args.runs} --write` — "
        f"{platform.machine()}, {os.cpu_count()} CPUs, onnxruntime {onnxruntime.__version__} (CPU EP); "
        f"{args.num} images per key press, median of {args.runs} interleaved runs (seeds 1…{args.runs}, classes "
        f"cycled), each model exported with `dsd export --onnx --steps {args.steps}` and its default guidance.\n\n"
        + table(draws, results, args.num)
    )
    print(text)
    if args.write:
        write_section(text, START, END)


if __name__ == "__main__":
    main()
