"""How many CPU threads torch and onnxruntime get by default. Torch's own default (one per physical core)
collapses when another process holds a core: every parallel region then waits for a thread the OS has
descheduled, whatever OpenMP's wait policy (docs/benchmarks.md, "Threads"). dsd leaves one usable CPU free.
Torch-free, so the ONNX path uses the same policy."""

from __future__ import annotations

import os
from pathlib import Path


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup-v2 CPU quota (containers)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def default_threads(torch_default: int) -> int:
    """OMP_NUM_THREADS where set (the user's, or torchrun's for data-parallel ranks); else one less than the
    usable CPUs (a busy machine keeps a core for its other work; one thread on two cores), and never more than
    torch's own choice (its physical cores: hyper-threads slow these kernels)."""
    try:
        asked = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        asked = 0
    if asked > 0:
        return asked
    return max(1, min(torch_default, usable_cpus() - 1))
