"""The app around the run: inline errors, a run that dies, pause/stop, quitting with a run going, attaching."""

from __future__ import annotations

import json
import signal

import pytest
from PIL import Image
from textual.widgets import Button, Input, Static

from dsd_tui.app import DsdApp, parse_args
from dsd_tui.tui.process import RunProcess, _proc_state
from dsd_tui.tui.screens.dialogs import HelpScreen, QuitScreen
from dsd_tui.tui.screens.run import RunScreen
from dsd_tui.tui.screens.setup import SetupScreen

from .tui_helpers import (
    CATALOG,
    SLEEPER,
    attached_sleeper,
    fake_run,
    message,
    use_fake_sampler,
    wait_for,
    write_finished_run,
)


async def test_starts_on_setup_help_opens_and_q_quits(tmp_path):
    app = DsdApp(runs_root=tmp_path / "runs", catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, SetupScreen) and app.focused is app.screen.query_one("#start", Button)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_code == 0


async def test_bad_input_shows_inline_errors_and_starts_nothing(tmp_path):
    app = DsdApp(runs_root=tmp_path / "runs", catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.screen.query_one("#updates", Input)
        field.focus()
        await pilot.press("x")  # focusing selects the field's text: typing replaces it
        error = app.screen.query_one("#updates-error", Static)
        assert error.display and "whole number" in str(error.render())
        await pilot.press("enter")
        assert isinstance(app.screen, SetupScreen) and not (tmp_path / "runs").exists()
        assert "fix the fields" in str(app.screen.query_one("#start-note", Static).render())
        await pilot.press("backspace", "5")
        assert field.value == "5" and not error.display


async def test_a_run_that_dies_shows_its_error_and_the_app_lives_on(tmp_path):
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        proc = fake_run(tmp_path / "r", 'print("error: the model exploded"); sys.exit(2)')
        app.push_screen(RunScreen(tmp_path / "r", app.track(proc)))
        await pilot.pause()
        screen = app.screen
        await wait_for(pilot, lambda: screen.problem is not None, what="the failure")
        assert "run failed" in message(screen) and "the model exploded" in message(screen)
        assert screen.state.update == 1 and screen.query_one("#run-message").has_class("-error")
        assert not screen.check_action("stop", ()) and not screen.check_action("resume_run", ())
        (tmp_path / "r" / "checkpoints").mkdir()
        (tmp_path / "r" / "checkpoints" / "state.safetensors").write_bytes(b"")
        assert screen.check_action("resume_run", ())  # r resumes once there is a checkpoint
        await pilot.press("escape")
        assert isinstance(app.screen, SetupScreen)


async def test_a_crash_without_an_error_line_shows_the_traceback_end(tmp_path):
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        proc = fake_run(tmp_path / "r", 'raise MemoryError("out of memory in the UNet")')
        app.push_screen(RunScreen(tmp_path / "r", proc))
        await pilot.pause()
        await wait_for(pilot, lambda: app.screen.problem is not None, what="the crash")
        assert "MemoryError: out of memory in the UNet" in message(app.screen)


async def test_pause_resume_and_stop_signal_the_process(tmp_path):
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        proc = fake_run(tmp_path / "r", SLEEPER)
        app.push_screen(RunScreen(tmp_path / "r", app.track(proc)))
        await pilot.pause()
        await wait_for(pilot, lambda: app.screen.state.update == 1, what="the first event")
        await pilot.press("p")
        assert proc.paused and _proc_state(proc.pid) == "T"
        assert "paused" in str(app.screen.query_one("#run-status", Static).render())
        await pilot.press("p")
        assert not proc.paused and _proc_state(proc.pid) != "T"
        await pilot.press("p", "s")  # a stop while paused must still arrive
        await wait_for(pilot, lambda: app.screen.problem is not None, what="the stop")
        assert proc.poll() == 130 and "stopped at update 1" in message(app.screen)


@pytest.mark.parametrize("choice", ["leave", "stop"])
async def test_quitting_with_a_run_going_asks(tmp_path, choice):
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    proc = None
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            proc = fake_run(tmp_path / "r", SLEEPER)
            app.push_screen(RunScreen(tmp_path / "r", app.track(proc)))
            await pilot.pause()
            await pilot.press("q")
            assert isinstance(app.screen, QuitScreen)
            assert str(tmp_path / "r") in str(app.screen.query_one("#quit-question", Static).render())
            await pilot.click(f"#{choice}")
        assert app.return_code == 0
        if choice == "stop":
            proc.popen.wait(10)
            assert proc.poll() == 130
        else:
            assert proc.running and RunProcess.find(tmp_path / "r").pid == proc.pid  # found again by --attach
    finally:
        if proc is not None and proc.poll() is None:
            proc.popen.send_signal(signal.SIGKILL)
            proc.popen.wait(10)


async def test_attach_to_a_finished_run(tmp_path):
    run = write_finished_run(tmp_path / "r", updates=40)
    app = DsdApp(attach=run, runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.process is None
        status = str(screen.query_one("#run-status", Static).render())
        assert "update 40/40" in status and "finished" in status and "4.0 upd/s" in status
        assert screen.check_action("export", ()) and not screen.check_action("pause", ())


async def test_a_silent_unfinished_run_is_reported(tmp_path):
    run = write_finished_run(tmp_path / "r", updates=40, ended=False)  # its events are from 2023
    app = DsdApp(attach=run, runs_root=tmp_path, catalog=CATALOG, hang_after=30)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "no events for" in str(app.screen.query_one("#run-status", Static).render())


def test_attach_needs_a_run_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--attach", str(tmp_path)])
    assert exc.value.code == 2 and "not a run folder" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"command": "distill"}))
    assert parse_args(["--attach", str(tmp_path)]).attach == tmp_path


async def test_sampler_keys_change_seed_steps_and_save(tmp_path, monkeypatch):
    use_fake_sampler(monkeypatch)
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_sampler({2: tmp_path / "m-2steps.onnx", 4: tmp_path / "m-4steps.onnx"}, tmp_path / "out")
        await pilot.pause()
        screen = app.screen
        await wait_for(pilot, lambda: screen.latest is not None, what="samples")
        assert (screen.latest.seed, screen.latest.steps) == (0, 2)
        await pilot.press("n")
        await wait_for(pilot, lambda: screen.latest.seed == 1, what="seed 1")
        await pilot.press("]")
        await wait_for(pilot, lambda: screen.latest.steps == 4, what="4 steps")
        assert "seed 1 · 4 steps" in str(screen.query_one("#sample-info", Static).render())
        await pilot.press("]")  # already the most steps exported: stays
        await pilot.press("s")
        await pilot.pause()
        saved = tmp_path / "out" / "samples-4steps-seed1.png"
        assert saved.is_file() and Image.open(saved).size[0] > 8 * 8 * 2


async def test_an_attached_run_stopped_from_here_reads_as_stopped(tmp_path):
    async with attached_sleeper(tmp_path) as (pilot, screen, _):
        assert screen.process is not None and screen.process.popen is None  # found, not started
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.problem is not None, what="the stop")
        assert "stopped at update 1" in message(screen) and "failed" not in message(screen)


def test_threads_default_to_one_for_runs_and_every_usable_core_for_sampling(monkeypatch):
    """A new run gets one thread unless told (a spinning run beside other work collapses); the sampler's
    onnxruntime, which does not spin, every usable core (dsd_core.threads.onnx_threads); `--threads N` sets
    both."""
    import dsd_tui.app as app_module

    monkeypatch.setattr(app_module, "onnx_threads", lambda: 6)
    assert parse_args([]).threads is None
    default = DsdApp(threads=parse_args([]).threads)
    assert (default.threads, default.sample_threads) == (1, 6)
    told = DsdApp(threads=parse_args(["--threads", "3"]).threads)
    assert (told.threads, told.sample_threads) == (3, 3)
