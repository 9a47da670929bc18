"""How many CPU threads torch gets by default. Torch's own default (one per physical core) with OpenMP's
active spin-wait collapses when another process holds a core: every parallel region then waits on a thread the
OS has descheduled (docs/benchmarks.md, "Threads"). dsd leaves one usable CPU free and lets idle OpenMP threads
sleep. Torch-free: the policy is set before torch is imported."""

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


def passive_wait() -> None:
    """Idle OpenMP threads sleep instead of spinning. Read once when libgomp loads, so this must run before torch
    is imported; a value the user set is kept."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
