"""Threads: dsd's default thread count against one thread and all CPUs, on an idle machine and with one
competing CPU-bound process, for the three CLI jobs a new user runs first; the table in docs/benchmarks.md.

    python benchmarks/threads.py [--repeats 3] [--write]

Each cell is the median wall time of the whole command (start-up included) over the repeats. Rows:
`default` is dsd's policy (usable CPUs − 1, at most one per physical core); `1` and `all` are `--threads 1` and
`--threads <usable CPUs>` (torch's own default on a machine without hyper-threads); `all, passive` is `all`
with OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of spinning), the other cure one might try. The
competing process is one Python busy loop. Repeats interleave the settings, so a slow spell hits all alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quality import write_section  # noqa: E402  (benchmarks/ is the script's folder)

from dsd_core.threads import usable_cpus

DSD = [sys.executable, "-m", "dsd_tui.cli"]


def jobs(folder: Path) -> dict[str, list[str]]:
    return {
        "sample 64 images (digits-v-dsd8, 8 steps)": ["sample", "--num", "64", "--force", str(folder / "s.npz")],
        "distill 30 updates (digits-v, 16→8, batch 64)": [
            "distill", "--from", "16", "--to", "8", "--updates", "30", "--sample-every", "1000",
            "--checkpoint-every", "1000", "--run-dir", str(folder / "run")],
        "train-classifier 3 epochs": ["train-classifier", "--epochs", "3", "--out", str(folder / "c.safetensors")],
    }


def settings() -> dict[str, tuple[list[str], dict]]:
    cpus = str(usable_cpus())
    return {"default": ([], {}), "1": (["--threads", "1"], {}), "all": (["--threads", cpus], {}),
            "all, passive": (["--threads", cpus], {"OMP_WAIT_POLICY": "PASSIVE"})}


def timed(args: list[str], env: dict, folder: Path) -> float:
    for leftover in (folder / "run", folder / "c.safetensors"):
        subprocess.run(["rm", "-rf", str(leftover)], check=True)
    start = time.perf_counter()
    done = subprocess.run(DSD + args, capture_output=True, text=True, env={**os.environ, **env}, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"dsd {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return elapsed


def measure(repeats: int, folder: Path) -> dict[tuple[str, str, str], float]:
    times: dict[tuple[str, str, str], list[float]] = {}
    for load in ("idle", "1 competing process"):
        burner = None
        if load != "idle":
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            for _ in range(repeats):
                for job, args in jobs(folder).items():
                    for name, (extra, env) in settings().items():
                        times.setdefault((job, load, name), []).append(timed(args + extra, env, folder))
                        print(job, load, name, f"{times[(job, load, name)][-1]:.2f} s", file=sys.stderr)
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
    return {key: statistics.median(values) for key, values in times.items()}


def table(medians: dict, repeats: int) -> str:
    names = list(settings())
    lines = [f"`python benchmarks/threads.py --repeats {repeats} --write` — {platform.machine()}, "
             f"{usable_cpus()} usable CPUs, {os.cpu_count()} logical; median wall time of the whole command (s), "
             f"and the slowdown against the best setting of its row", "",
             "| job | load | " + " | ".join(f"{n} thread" if n == "1" else n for n in names) + " |",
             "|---|---|" + "---:|" * len(names)]
    for job, load in dict.fromkeys((j, ld) for j, ld, _ in medians):
        row = [medians[(job, load, n)] for n in names]
        best = min(row)
        lines.append(f"| {job} | {load} | " + " | ".join(f"{t:.2f} ({t / best:.1f}×)" for t in row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        text = table(measure(args.repeats, Path(folder)), args.repeats)
    print(text)
    if args.write:
        write_section(text, "<!-- threads:start -->", "<!-- threads:end -->")


if __name__ == "__main__":
    main()
