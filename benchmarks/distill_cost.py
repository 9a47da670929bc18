"""What one update of each method costs: wall time measured interleaved in one process, and peak memory
measured in one fresh process per method. Into docs/benchmarks.md.

    python benchmarks/distill_cost.py [--batch 64] [--rounds 30] [--threads 1] [--write]

Interleaving (DSD, TSD, PD, DSD, TSD, PD, …) puts every method under the same machine load, so the ratios
hold on a shared machine even when absolute times drift. Memory: each method runs `--memory-updates` updates
in its own subprocess, which reports its peak RSS and the RSS before the first update (model, data, pool).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from quality import write_section  # noqa: E402  (benchmarks/ is the script's folder)

from dsd_core.distill.runner import DistillConfig, Distiller, load_base

METHODS = ("dsd", "tsd", "pd")
START, END = "<!-- cost:start -->", "<!-- cost:end -->"


def distiller(method: str, batch: int, tmp: str) -> Distiller:
    base, name, sha = load_base("digits", torch.device("cpu"))
    cfg = DistillConfig(method=method, schedule="naive", n_to=8, updates=10**6, batch=batch, data="digits")
    d = Distiller(base, cfg, f"{tmp}/{method}", torch.device("cpu"), name, sha)
    d.start_stage(0)
    return d


def timed_update(d: Distiller) -> float:
    start = time.perf_counter()
    d.step()
    return time.perf_counter() - start


def interleaved(batch: int, rounds: int, warmup: int = 5) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        runs = {m: distiller(m, batch, tmp) for m in METHODS}
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        for i in range(warmup + rounds):
            order = METHODS[i % 3:] + METHODS[: i % 3]  # rotate who goes first
            for m in order:
                dt = timed_update(runs[m])
                if i >= warmup:
                    times[m].append(dt)
        nfe = {m: runs[m].nfe["updates"] / (warmup + rounds) for m in METHODS}
    return {"times": times, "nfe": nfe}


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def memory(method: str, batch: int, updates: int) -> dict:
    """Run in a subprocess (Linux): resident memory before the first update, and its peak during the updates.

    Writing 5 to /proc/self/clear_refs resets the peak (VmHWM) after setup, so loading and imports do not mask
    what the updates themselves need.
    """
    with tempfile.TemporaryDirectory() as tmp:
        d = distiller(method, batch, tmp)
        d.step()  # first update: optimizer state and lazily created buffers exist from here on
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_mb("VmRSS")
        for _ in range(updates):
            d.step()
        return {"before_mb": before, "peak_mb": _status_mb("VmHWM")}


def table(result: dict, mem: dict, batch: int) -> str:
    med = {m: statistics.median(t) for m, t in result["times"].items()}
    lines = ["| method | NFE/update | median ms/update | × DSD | updates/s | RSS before MB | peak RSS during updates MB | peak − before MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in METHODS:
        grow = mem[m]["peak_mb"] - mem[m]["before_mb"]
        lines.append(f"| {m} | {result['nfe'][m]:.0f} | {1000 * med[m]:.1f} | {med[m] / med['dsd']:.2f} "
                     f"| {1 / med[m]:.2f} | {mem[m]['before_mb']:.0f} | {mem[m]['peak_mb']:.0f} | {grow:.1f} |")
    lines.append("")
    lines.append(f"Wall time per update DSD/PD = **{med['dsd'] / med['pd']:.2f}**, TSD/PD = "
                 f"{med['tsd'] / med['pd']:.2f} (batch {batch}); memory an update needs (peak − before) DSD "
                 f"{mem['dsd']['peak_mb'] - mem['dsd']['before_mb']:.1f} MB vs PD "
                 f"{mem['pd']['peak_mb'] - mem['pd']['before_mb']:.1f} MB.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--memory-updates", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory", choices=METHODS, help=argparse.SUPPRESS)  # the per-method subprocess
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory:
        print(json.dumps(memory(args.memory, args.batch, args.memory_updates)))
        return
    result = interleaved(args.batch, args.rounds)
    mem = {}
    for m in METHODS:
        out = subprocess.run([sys.executable, __file__, "--memory", m, "--batch", str(args.batch),
                              "--memory-updates", str(args.memory_updates), "--threads", str(args.threads)],
                             check=True, capture_output=True, text=True).stdout
        mem[m] = json.loads(out.strip().splitlines()[-1])
    text = (f"Command: `python benchmarks/distill_cost.py --batch {args.batch} --rounds {args.rounds} --threads "
            f"{args.threads} --write` — {platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
            f"the default model (digits, 8×8); median of {args.rounds} interleaved updates per method after 5 "
            f"warm-up rounds; memory from one fresh process per method ({args.memory_updates} updates).\n\n"
            + table(result, mem, args.batch))
    print(text)
    if args.write:
        write_section(text, START, END)


if __name__ == "__main__":
    main()
