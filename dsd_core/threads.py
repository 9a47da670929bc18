"""How many CPU threads torch and onnxruntime get by default. Torch's own default (one per physical core)
collapses when another process holds a core: every parallel region then waits for a thread the OS has
descheduled, whatever OpenMP's wait policy (docs/benchmarks.md, "Threads"). dsd leaves one usable CPU free.
onnxruntime, which dsd runs without spinning, gains from every core even beside a busy process: it gets one
thread per usable physical core. Torch-free, so the ONNX path reads it without importing torch."""

from __future__ import annotations

import os
from pathlib import Path


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup-v2 CPU quota (containers)."""
    cpus = len(_affinity())
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def physical_cores(cpus: set[int], root: Path = Path("/sys/devices/system/cpu")) -> int:
    """Physical cores among `cpus` (hyper-thread siblings count once); len(cpus) where sysfs does not say."""
    cores = set()
    for cpu in cpus:
        topology = root / f"cpu{cpu}" / "topology"
        for name in ("core_cpus_list", "thread_siblings_list"):  # the second: kernels before 5.8
            try:
                cores.add((topology / name).read_text().strip())
                break
            except OSError:
                continue
        else:
            return len(cpus)
    return max(1, len(cores))


def _asked() -> int:
    """OMP_NUM_THREADS as a positive number, else 0."""
    try:
        asked = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return 0
    return max(0, asked)


def default_threads(torch_default: int) -> int:
    """OMP_NUM_THREADS where set (the user's, or torchrun's for data-parallel ranks); else one less than the
    usable CPUs (a busy machine keeps a core for its other work; one thread on two cores), and never more than
    torch's own choice (its physical cores: hyper-threads slow these kernels)."""
    return _asked() or max(1, min(torch_default, usable_cpus() - 1))


def onnx_threads() -> int:
    """onnxruntime's intra-op threads unless told: OMP_NUM_THREADS where set, else one per usable physical core
    (docs/benchmarks.md, "A key press in the sampler": two threads beat one on two cores, idle and busy)."""
    return _asked() or max(1, min(usable_cpus(), physical_cores(_affinity())))
