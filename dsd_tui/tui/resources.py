"""What a run's process uses — CPU, memory, and GPU where `pynvml` is importable — for the run screen's header.

Read at most once a second, from /proc on Linux (psutil elsewhere, when it is installed: not a dependency).
Whatever fails (the process gone, no /proc, no psutil, no GPU) reads as nothing shown, never as an error.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

READ_EVERY_S = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def format_bytes(n: float) -> str:
    """412 MiB, 1.2 GiB: two or three figures, as the header has room for."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            break
        n /= 1024
    return f"{n:.1f} {unit}" if n < 10 and unit != "B" else f"{n:.0f} {unit}"


def cpu_and_memory(pid: int) -> tuple[float, int] | None:
    """(CPU seconds used so far, resident bytes) of a live process, else None."""
    if sys.platform.startswith("linux"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[-1].split()  # from field 3 (state) on: the name may hold spaces
        rss = [line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")]
        if fields[0] == "Z" or not rss:
            return None
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, int(rss[0]) * 1024  # utime + stime; kB
    try:
        import psutil
    except ImportError:
        return None
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        return times.user + times.system, proc.memory_info().rss
    except psutil.Error:
        return None


class Gpu:
    """The GPU a process runs on, through NVML: off for good after the first thing that fails."""

    def __init__(self):
        self.nvml = None
        self.off = False

    def text(self, pid: int) -> str:
        if self.off:
            return ""
        try:
            if self.nvml is None:
                import pynvml

                pynvml.nvmlInit()
                self.nvml = pynvml
            nvml = self.nvml
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid == pid:
                        used = f" {format_bytes(proc.usedGpuMemory)}" if proc.usedGpuMemory else ""
                        return f"GPU{i} {nvml.nvmlDeviceGetUtilizationRates(handle).gpu}%{used}"
        except Exception:  # noqa: BLE001 -- no pynvml, no driver, any NVML error: the GPU part is optional
            self.off = True
        return ""


class ProcessMeter:
    """`text(pid)`: e.g. "CPU 98% · mem 412 MB", cached between reads; "" when there is nothing to show."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.gpu = Gpu()
        self.pid: int | None = None
        self.last: tuple[float, float] | None = None  # (CPU seconds, clock) of the previous read
        self.read_at = float("-inf")
        self.shown = ""

    def text(self, pid: int | None) -> str:
        if pid != self.pid:
            self.pid, self.last, self.read_at, self.shown = pid, None, float("-inf"), ""
        now = self.clock()
        if pid is None or now - self.read_at < READ_EVERY_S:
            return self.shown
        self.read_at = now
        try:
            self.shown = self.read(pid, now)
        except (OSError, ValueError, IndexError):  # a /proc file of an unexpected shape
            self.shown = ""
        return self.shown

    def read(self, pid: int, now: float) -> str:
        usage = cpu_and_memory(pid)
        if usage is None:
            self.last = None
            return ""
        cpu, memory = usage
        parts = []
        if self.last is not None and now > self.last[1]:
            parts.append(f"CPU {100 * (cpu - self.last[0]) / (now - self.last[1]):.0f}%")
        self.last = (cpu, now)
        parts.append(f"mem {format_bytes(memory)}")
        gpu = self.gpu.text(pid)
        return " · ".join(parts + ([gpu] if gpu else []))
