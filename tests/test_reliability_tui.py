"""The app around runs that go wrong: a run that hangs, one killed from outside (ours, or one found by
--attach), and one left running on quit — each shown as such, and the app lives on."""

from __future__ import annotations

import signal

from textual.widgets import Static

from dsd_tui.app import DsdApp
from dsd_tui.tui.recent import describe
from dsd_tui.tui.screens.dialogs import HelpScreen, QuitScreen
from dsd_tui.tui.screens.run import RunScreen

from .tui_helpers import CATALOG, SLEEPER, attached_sleeper, fake_run, message, wait_for


def status(screen) -> str:
    return str(screen.query_one("#run-status", Static).render())


async def test_a_hanging_run_then_a_kill_from_outside(tmp_path):
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG, hang_after=1.0)
    proc = fake_run(tmp_path / "r", SLEEPER)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            app.push_screen(RunScreen(tmp_path / "r", app.track(proc)))
            await pilot.pause()
            screen = app.screen
            await wait_for(pilot, lambda: "no events for" in status(screen), what="the hang")
            assert proc.running  # silent, not dead: nothing is killed for being slow
            proc.popen.send_signal(signal.SIGKILL)
            await wait_for(pilot, lambda: screen.problem is not None, what="the kill")
            assert "killed by SIGKILL" in message(screen) and "failed" in status(screen)
            await pilot.press("question_mark")  # the app still answers
            assert isinstance(app.screen, HelpScreen)
    finally:
        if proc.popen.poll() is None:
            proc.popen.kill()
        proc.popen.wait(10)


async def test_an_attached_run_killed_from_outside(tmp_path):
    async with attached_sleeper(tmp_path) as (pilot, screen, started):
        started.popen.send_signal(signal.SIGKILL)
        started.popen.wait(10)
        await wait_for(pilot, lambda: screen.problem is not None, what="the kill")
        assert "killed from outside" in message(screen) and "exited with code -1" not in message(screen)


async def test_a_run_left_running_on_quit_is_listed_as_running(tmp_path):
    proc = fake_run(tmp_path / "r", SLEEPER)
    (tmp_path / "r" / "config.json").write_text('{"command": "distill", "distill": {"updates": 10}}')
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            app.push_screen(RunScreen(tmp_path / "r", app.track(proc)))
            await pilot.pause()
            await pilot.press("q")
            assert isinstance(app.screen, QuitScreen)  # never silently: the app asks
            await pilot.click("#leave")
        assert proc.running and describe(tmp_path / "r").status == "running"  # the home screen shows it
    finally:
        if proc.popen.poll() is None:
            proc.popen.kill()
        proc.popen.wait(10)
