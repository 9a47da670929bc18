"""What one update of each method costs: wall time measured interleaved in one process, and the tensor memory
an update holds at its peak, counted exactly. Into docs/benchmarks.md.

    python benchmarks/distill_cost.py [--batch 64] [--rounds 30] [--threads 1] [--write]

Interleaving (every variant in turn, the order rotating each round) puts every method under the same machine
load, so the ratios hold on a shared machine even when absolute times drift. The network's own costs (a
forward pass without gradient, a forward + backward pass) are timed in the same rounds, which gives the
ratio DSD/PD would have if nothing but network evaluations cost time: (F + FB) / (2F + FB).

Memory is counted, not sampled: the tensors alive before an update (weights, EMA, frozen teacher, optimizer
state, pool, data) plus the peak of the allocations and frees that torch's profiler records during one
update (gradients included). The process's resident size, which we used before, moved by ~15 MB between
identical runs: more than the differences measured here.
"""

from __future__ import annotations

import argparse
import copy
import gc
import platform
import statistics
import tempfile
import time

import torch
from quality import write_section  # noqa: E402  (benchmarks/ is the script's folder)
from torch.profiler import ProfilerActivity, profile

from dsd_core.accel import autocast_net
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.runner import Distiller, load_base

# (label, method, extra DistillConfig fields)
VARIANTS = (
    ("dsd", "dsd", {}),
    ("dsd, teacher in 2 slices", "dsd", {"teacher_chunks": 2}),
    ("dsd, teacher in 4 slices", "dsd", {"teacher_chunks": 4}),
    ("tsd", "tsd", {}),
    ("dsd-stage (teacher frozen per stage)", "dsd-stage", {}),
    ("pd", "pd", {}),
)
START, END = "<!-- cost:start -->", "<!-- cost:end -->"
MB = 2**20


def distiller(method: str, batch: int, tmp: str, **extra) -> Distiller:
    base, name, sha = load_base("digits", torch.device("cpu"))
    cfg = DistillConfig(method=method, schedule="naive", n_to=8, updates=10**6, batch=batch, data="digits",
                        **{"teacher_first": "off", **extra})  # the 2-NFE update
    d = Distiller(base, cfg, tempfile.mkdtemp(dir=tmp), torch.device("cpu"), name, sha)
    d.start_stage(0)
    return d


def sync() -> None:
    """Wait for the GPU's queued work (nothing to wait for on the CPU), so a timing covers it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def network_probes(d: Distiller, batch: int) -> dict:
    """The network alone (a copy), at the update's batch, device and autocast: forward without gradient,
    forward + backward."""
    net, c, dev = copy.deepcopy(d.model), d.model.config, d.device
    run = autocast_net(net, dev, d.cfg.amp)
    x = torch.randn(batch, c.in_channels, c.image_size, c.image_size, device=dev)
    t = torch.randint(0, 1000, (batch,), device=dev)

    def forward():
        with torch.no_grad():
            run(x, t)

    def forward_backward():
        run(x, t).pow(2).mean().backward()
        net.zero_grad(set_to_none=True)

    return {"forward (no grad)": forward, "forward + backward": forward_backward}


def interleaved(batch: int, rounds: int, tmp: str, warmup: int = 5, make=distiller) -> dict:
    """Median seconds per update of each variant (and of the network probes); `make` builds a variant's run
    as `distiller` does."""
    runs = {label: make(method, batch, tmp, **extra) for label, method, extra in VARIANTS}
    jobs = {label: d.step for label, d in runs.items()} | network_probes(runs["pd"], batch)
    times: dict[str, list[float]] = {label: [] for label in jobs}
    labels = list(jobs)
    for i in range(warmup + rounds):
        for label in labels[i % len(labels):] + labels[: i % len(labels)]:  # rotate who goes first
            dt = timed(jobs[label])
            if i >= warmup:
                times[label].append(dt)
    nfe = {label: d.nfe["updates"] / (warmup + rounds) for label, d in runs.items()}
    return {"median": {label: statistics.median(ts) for label, ts in times.items()}, "nfe": nfe}


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, torch.nn.Module):
        return [*obj.parameters(), *obj.buffers()]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    return []


def resident_bytes(d: Distiller) -> dict[str, int]:
    """What an update keeps between updates, by kind (each storage counted once)."""
    kinds = {
        "weights": _tensors(d.model),
        "EMA": _tensors(d.ema.shadow),
        "frozen teacher": _tensors(d.frozen_base) + _tensors(d.round_teacher)
        + _tensors(getattr(d.updates.get("dsd-stage"), "stage_teacher", None)),
        "optimizer": _tensors(d.opt.state),
        "pool + data": _tensors(d.pool.x) + _tensors(d.data),
    }
    seen, out = set(), {}
    for kind, tensors in kinds.items():
        total = 0
        for t in tensors:
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
        out[kind] = total
    return out


def update_peak_bytes(d: Distiller) -> int:
    """Peak of the bytes allocated minus freed during one update (gradients are made inside it)."""
    d.opt.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        d.step()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def memory(batch: int, tmp: str, make=distiller, peak=update_peak_bytes) -> dict[str, dict]:
    """Each variant's resident bytes by kind and its update's peak (`peak`: how that is counted)."""
    out = {}
    for label, method, extra in VARIANTS:
        gc.collect()  # the previous variant's run (its modules hold cycles) is freed before the next is built
        d = make(method, batch, tmp, **extra)
        for _ in range(2):  # optimizer state exists from the first update on
            d.step()
        out[label] = {"resident": resident_bytes(d), "update": peak(d)}
    del d
    gc.collect()
    return out


def table(result: dict, mem: dict, batch: int) -> str:
    med, nfe = result["median"], result["nfe"]
    f, fb = med["forward (no grad)"], med["forward + backward"]
    lines = ["| method | NFE/update | median ms/update | time × PD | resident MB (weights + EMA + frozen teacher + "
             "optimizer) | update's peak MB | total peak MB | memory × PD |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    total = {label: sum(m["resident"].values()) + m["update"] for label, m in mem.items()}
    for label, _, _ in VARIANTS:
        r = mem[label]["resident"]
        parts = " + ".join(f"{r[k] / MB:.1f}" for k in ("weights", "EMA", "frozen teacher", "optimizer"))
        lines.append(f"| {label} | {nfe[label]:.0f} | {1000 * med[label]:.1f} | {med[label] / med['pd']:.2f} "
                     f"| {parts} | {mem[label]['update'] / MB:.1f} | {total[label] / MB:.1f} "
                     f"| {total[label] / total['pd']:.3f} |")
    lines += ["", f"The network alone at batch {batch}: forward without gradient {1000 * f:.1f} ms, forward + "
              f"backward {1000 * fb:.1f} ms, so counting network evaluations only, DSD/PD = (F + FB)/(2F + FB) = "
              f"**{(f + fb) / (2 * f + fb):.2f}**; measured DSD/PD = **{med['dsd'] / med['pd']:.2f}**, TSD/PD = "
              f"{med['tsd'] / med['pd']:.2f}. Peak tensor memory DSD/PD = **{total['dsd'] / total['pd']:.3f}**; "
              f"with the teacher in 2 slices {total['dsd, teacher in 2 slices'] / total['pd']:.3f} at "
              f"{med['dsd, teacher in 2 slices'] / med['pd']:.2f}× PD's time."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        result = interleaved(args.batch, args.rounds, tmp)
        mem = memory(args.batch, tmp)
    text = (f"Command: `python benchmarks/distill_cost.py --batch {args.batch} --rounds {args.rounds} --threads "
            f"{args.threads} --write` — {platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
            f"the default model (digits, 8×8, 1.13 M parameters); median of {args.rounds} interleaved updates per "
            "variant after 5 warm-up rounds; memory counted from tensors and torch's allocation records.\n\n"
            + table(result, mem, args.batch))
    print(text)
    if args.write:
        write_section(text, START, END)


if __name__ == "__main__":
    main()
