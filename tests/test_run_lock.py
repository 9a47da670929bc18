"""One process owns a run folder at a time (docs/reliability.md, rows 37–41): a second writer of any kind (a new run,
a resume, the library, the terminal app) gets one line naming the holder's pid and writes nothing; the lock is
held for the run's life and goes with its process however that ends, SIGKILL included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from dsd_core import interrupt
from dsd_core.atomic import PAUSE_ENV
from dsd_core.errors import DsdError
from dsd_core.run_lock import LOCK_FILE, RunInUse, RunLock, holder
from dsd_tui.app import DsdApp
from dsd_tui.tui.process import external_pid
from dsd_tui.tui.recent import describe

from .reliability_helpers import assert_one_line_error, dsd, listing
from .run_helpers import hold_lock, resume_args, stopped_run, tiny_distiller
from .tui_helpers import CATALOG, wait_for

DSD = [sys.executable, "-c", "from dsd_tui.cli import main; main()"]


def free(run) -> bool:
    """No process holds RUN, and this one can take it."""
    if holder(run) is not None:
        return False
    RunLock(run).acquire().release()
    return True


def test_a_second_writer_gets_one_line_naming_the_holder_and_writes_nothing(tmp_path):
    run, fresh = stopped_run(tmp_path), tmp_path / "fresh"
    fresh.mkdir()
    holders = [hold_lock(run), hold_lock(fresh)]
    try:
        pid, fresh_pid = (p.pid for p in holders)
        before = listing(tmp_path)
        assert_one_line_error(dsd(*resume_args(run)), f"pid {pid}", "in use by another dsd process")
        assert_one_line_error(dsd("distill", "--model", tmp_path / "tiny.safetensors", "--run-dir", fresh,
                                  "--updates", 2, "--threads", 1), f"pid {fresh_pid}")
        assert_one_line_error(dsd("train", "--data", "digits", "--out", fresh, "--steps", 2), f"pid {fresh_pid}")
        with pytest.raises(RunInUse, match=f"pid {pid}"):  # the run's own lock, not only the CLI's early look
            tiny_distiller(tmp_path / "tiny.safetensors", run).run_loop(resume=True)
        with pytest.raises(RunInUse, match=f"pid {fresh_pid}"):
            tiny_distiller(tmp_path / "tiny.safetensors", fresh).run_loop()
        assert listing(tmp_path) == before  # no event, no config, no checkpoint, no lock record
        for proc in holders:  # a crash: the OS drops the lock, and the next run takes it
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert free(run) and free(fresh)
        result = dsd(*resume_args(run))
        assert result.exit_code == 0, result.output
        assert (run / "model.safetensors").is_file()
    finally:
        for proc in holders:
            proc.kill()
            proc.wait(10)


def test_one_process_cannot_take_a_run_twice(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunInUse, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
        assert holder(tmp_path).pid == os.getpid()
    assert free(tmp_path)


def test_the_lock_is_held_for_the_run_and_released_on_every_way_out(tmp_path, monkeypatch):
    ckpt = stopped_run(tmp_path).parent / "tiny.safetensors"
    seen = []
    path = tiny_distiller(ckpt, tmp_path / "a").run_loop(lambda u, e: seen.append(holder(tmp_path / "a").pid))
    assert seen == [os.getpid()] * 8 and free(tmp_path / "a")  # normal end

    def crash(update, event):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        tiny_distiller(ckpt, tmp_path / "b").run_loop(crash)
    assert free(tmp_path / "b")  # an exception

    def ctrl_c(update, event):
        if update == 2:
            monkeypatch.setattr(interrupt, "_requested", True)

    with pytest.raises(interrupt.Interrupted):
        tiny_distiller(ckpt, tmp_path / "c").run_loop(ctrl_c)
    monkeypatch.setattr(interrupt, "_requested", False)
    assert free(tmp_path / "c")  # Ctrl-C: checkpoint, then stop
    for run, message in ((tmp_path / "a", "already finished"), (tmp_path / "d", "nothing to resume")):
        with pytest.raises(DsdError, match=message):
            tiny_distiller(ckpt, run).run_loop(resume=True)
        assert free(run)  # refused before the first update
    assert path.is_file()


def test_a_real_run_holds_its_lock_until_killed_and_the_app_shows_it_running(tmp_path):
    run = stopped_run(tmp_path)
    env = {**os.environ, "NO_COLOR": "1", PAUSE_ENV: "state.safetensors:60"}  # pause halfway through update 8's
    proc = subprocess.Popen(DSD + [str(a) for a in resume_args(run)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not any(p.stat().st_size for p in (run / "checkpoints").glob(".state.safetensors.*.tmp")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ""
            time.sleep(0.05)
        assert holder(run).pid == proc.pid and external_pid(run) == proc.pid
        shown = describe(run)
        assert shown.status == "running" and shown.pid == proc.pid and not shown.resumable
        before = listing(tmp_path)
        assert_one_line_error(dsd(*resume_args(run)), f"pid {proc.pid}")
        assert listing(tmp_path) == before
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
        proc.wait(10)
    assert holder(run) is None and describe(run).status == "stopped"  # stale by construction
    result = dsd(*resume_args(run))
    assert result.exit_code == 0, result.output
    assert not list(run.rglob("*.tmp")) and (run / LOCK_FILE).is_file()


async def test_the_app_refuses_to_resume_a_locked_run_naming_its_pid(tmp_path):
    run = stopped_run(tmp_path)
    proc = hold_lock(run)
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            table = app.screen.query_one("#recent")
            table.focus()
            await pilot.pause()
            assert [r.status for r in app.screen.runs] == ["running"]
            await pilot.press("r")
            await wait_for(pilot, lambda: app._notifications, what="the refusal")
            said = [str(n.message) for n in app._notifications]
            assert any(f"it is running (pid {proc.pid})" in s for s in said), said
            app.open_run(run)
            await pilot.pause()
            assert type(app.screen).__name__ == "RunScreen"
            app.screen.action_resume_run()  # the key is off while a process writes the run; the action refuses too
            await pilot.pause()
            said = [str(n.message) for n in app._notifications]
            assert any(f"process {proc.pid} is writing it" in s for s in said), said
            assert app.processes == []  # nothing started
    finally:
        proc.kill()
        proc.wait(10)
