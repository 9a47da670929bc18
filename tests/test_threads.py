"""The default thread policy (dsd_core/threads.py): usable CPUs − 1, capped by torch's physical-core choice,
OMP_NUM_THREADS honoured; and every sampling line says how many threads it used."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dsd_core import threads
from dsd_core.threads import default_threads


@pytest.mark.parametrize("cpus, torch_default, expected", [(1, 1, 1), (2, 2, 1), (8, 4, 4), (16, 16, 15), (4, 2, 2)])
def test_one_cpu_left_free_and_no_more_than_physical_cores(monkeypatch, cpus, torch_default, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cpus", lambda: cpus)
    assert default_threads(torch_default) == expected


def test_omp_num_threads_wins(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 16)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(8) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "many")  # not a number: the policy as without it
    assert default_threads(8) == 8


def test_usable_cpus_is_within_the_affinity_mask():
    assert 1 <= threads.usable_cpus() <= len(os.sched_getaffinity(0))


def test_sampling_says_its_thread_count(tmp_path, monkeypatch):
    """In fresh processes, as a user runs dsd: torch's own default is only seen before anything changes it."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # here too: default_threads reads it
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}

    def fresh(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120,
                              check=True)
        return done.stdout

    n = default_threads(int(fresh("-c", "import torch; print(torch.get_num_threads())")))
    said = fresh("-m", "dsd_tui.cli", "sample", "--steps", "2", "--num", "2", str(tmp_path / "a.png"))
    assert f"cpu, {n} thread{'s' if n != 1 else ''} of " in said
    said = fresh("-m", "dsd_tui.cli", "sample", "--steps", "2", "--num", "2", "--threads", "1",
                 str(tmp_path / "b.png"))
    assert "cpu, 1 thread of " in said
