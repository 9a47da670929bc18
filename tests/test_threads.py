"""The default thread policy (dsd_core/threads.py): for torch usable CPUs − 1, capped by torch's physical-core
choice; for onnxruntime every usable physical core; OMP_NUM_THREADS honoured by both; and every sampling line
says how many threads it used."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dsd_core import threads
from dsd_core.threads import default_threads, onnx_threads, physical_cores


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


def test_physical_cores_count_hyper_thread_siblings_once(tmp_path):
    for cpu, siblings in enumerate(["0,2", "1,3", "0,2", "1,3"]):  # 2 cores × 2 threads, as sysfs lists them
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "core_cpus_list").write_text(siblings + "\n")
    assert physical_cores({0, 1, 2, 3}, tmp_path) == 2
    assert physical_cores({0, 2}, tmp_path) == 1  # an affinity mask of one core's two threads
    assert physical_cores({0, 1}, tmp_path) == 2
    assert physical_cores({0, 7}, tmp_path) == 2  # sysfs does not know cpu7: every CPU counts


@pytest.mark.parametrize("cpus, cores, expected", [(1, 1, 1), (2, 2, 2), (8, 4, 4), (4, 8, 4)])
def test_onnxruntime_gets_every_usable_physical_core(monkeypatch, cpus, cores, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(threads, "physical_cores", lambda _cpus: cores)
    assert onnx_threads() == expected
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert onnx_threads() == 3


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
