"""A key never does nothing silently, and the screen shows what applies: the export hands its keys back, `[`/`]`
and `p`/`s` say why they cannot act, the form's errors follow the typing, the run's folder and resources show."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from dsd_tui.app import DsdApp
from dsd_tui.tui.screens.sampler import SamplerScreen
from dsd_tui.tui.screens.setup import SetupScreen
from dsd_tui.tui.widgets.loss_plot import LossPlot

from .test_tui import SLEEPER, fake_run
from .tui_helpers import CATALOG, open_once_started, use_fake_sampler, wait_for, write_finished_run


def notified(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


def footer_keys(app) -> set[str]:
    return {key for key, active in app.screen.active_bindings.items() if active.binding.show and active.enabled}


def fake_export(out_dir: Path, steps: list[int]) -> list[str]:
    """Stands in for the export job: one report line per step count, as dsd_tui.tui.export_job prints them."""
    reports = [{"path": str(out_dir / f"m-{n}steps.onnx"), "steps": n, "max_abs_diff": 1e-6, "seconds": 0.1}
               for n in steps]
    return [sys.executable, "-c", f"import json\nfor r in {reports!r}: print(json.dumps(r))"]


async def test_after_an_export_from_the_field_the_screen_keys_work_again(tmp_path, monkeypatch):
    use_fake_sampler(monkeypatch)
    monkeypatch.setattr("dsd_tui.tui.screens.export.export_argv", lambda model, out, steps: fake_export(out, steps))
    (tmp_path / "m.safetensors").write_bytes(b"")
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_export(tmp_path, tmp_path / "m.safetensors", 2)
        await pilot.pause()
        screen = app.screen
        await wait_for(pilot, lambda: not screen.busy, what="the first export")
        field = screen.query_one("#export-steps", Input)
        field.focus()
        await pilot.pause()
        assert footer_keys(app) == {"enter", "escape"}  # typing here: Enter exports, letters are text
        field.value = ""
        await pilot.press("4", "enter")
        await wait_for(pilot, lambda: not screen.busy and 4 in screen.exported, what="the export of 4 steps")
        await pilot.pause()
        assert app.focused is screen.query_one("#exports", DataTable) and field.value == "4"
        assert {"x", "s", "escape"} <= footer_keys(app)
        await pilot.press("s")  # opens the sampler, no longer typed into the field
        assert isinstance(app.screen, SamplerScreen) and field.value == "4"


async def test_steps_keys_with_one_exported_count_say_so(tmp_path, monkeypatch):
    use_fake_sampler(monkeypatch)
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_sampler({8: tmp_path / "m-8steps.onnx"}, tmp_path)
        await pilot.pause()
        await wait_for(pilot, lambda: app.screen.latest is not None, what="samples")
        await pilot.press("]")
        assert any(m.startswith("only 8 steps exported") for m in notified(app))


def outside_run(run_dir: Path, threads: int = 3, named: bool = True) -> subprocess.Popen:
    """A sleeping run as `dsd distill --run-dir RUN_DIR` started it in a terminal: no tui-process.json."""
    run_dir.mkdir(parents=True)
    config = {"command": "distill", "threads": threads,
              "distill": {"method": "dsd", "schedule": "naive", "n_from": 4, "n_to": 2, "updates": 10}}
    (run_dir / "config.json").write_text(json.dumps(config))
    script = textwrap.dedent(f"""
        import json, sys, time
        with open({str(run_dir / "events.jsonl")!r}, "a") as f:
            f.write(json.dumps({{"event": "config", "time": time.time(), **{config!r}}}) + "\\n")
            f.write(json.dumps({{"event": "loss", "time": time.time(), "update": 1, "nfe": 8, "loss": 0.5}}) + "\\n")
        time.sleep(60)
    """)
    args = ["distill", "--run-dir", str(run_dir)] if named else []
    return subprocess.Popen([sys.executable, "-c", script, *args])


@pytest.mark.parametrize("named", [True, False])
async def test_pause_and_stop_of_a_run_started_outside_say_why_and_how(tmp_path, named):
    proc = outside_run(tmp_path / "r", named=named)
    try:
        app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_once_started(app, pilot, tmp_path / "r")
            assert screen.process is None and {"p", "s"} <= footer_keys(app)
            (tmp_path / "r" / "checkpoints").mkdir()
            (tmp_path / "r" / "checkpoints" / "state.safetensors").write_bytes(b"")
            assert screen.check_action("resume_run", ()) is (not named)  # never a second process on a live run
            await pilot.press("p", "s")
            pause, stop = notified(app)[-2:]
            if named:
                assert f"started outside the app (pid {proc.pid})" in pause and f"kill -STOP {proc.pid}" in pause
                assert "Ctrl-C in its terminal" in stop and f"kill -INT {proc.pid}" in stop
                await wait_for(pilot, lambda: "mem " in str(screen.query_one("#run-status", Static).render()),
                               what="the process's use")
                assert f"process {proc.pid}" in str(screen.query_one("#run-status", Static).render())
            else:
                assert "no process writing it was found" in pause and "no process writing it" in stop
            assert "3 threads" in str(screen.query_one("#run-status", Static).render())
            assert proc.poll() is None  # nothing was sent to it
    finally:
        proc.kill()
        proc.wait(10)


async def test_the_run_header_shows_the_apps_own_run_process(tmp_path):
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    proc = fake_run(tmp_path / "r", SLEEPER)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            app.open_run(tmp_path / "r")
            await pilot.pause()
            status = app.screen.query_one("#run-status", Static)
            await wait_for(pilot, lambda: "CPU " in str(status.render()), what="two readings of the process")
            assert f"process {proc.pid} · CPU " in str(status.render()) and "mem " in str(status.render())
            proc.popen.kill()
            proc.popen.wait(10)
            await wait_for(pilot, lambda: "process" not in str(status.render()), what="the process gone")
    finally:
        if proc.popen.poll() is None:
            proc.popen.kill()
        proc.popen.wait(10)


async def test_the_loss_plot_marks_where_each_stage_begins(tmp_path):
    run = write_finished_run(tmp_path / "r", updates=40)
    app = DsdApp(attach=run, runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.screen.query_one("#loss", LossPlot).boundaries() == [20.5]


async def test_form_errors_follow_the_typing(tmp_path):
    app = DsdApp(runs_root=tmp_path / "runs", catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert screen.query_one("#model").value == "digits-v" and screen.query_one("#lr", Input).value == "3e-5"
        note = screen.query_one("#start-note", Static)
        screen.query_one("#batch", Input).focus()
        await pilot.press("x", "enter")
        assert "fix the fields" in str(note.render())
        await pilot.press("backspace", "8")
        assert str(note.render()) == ""  # every field valid again: the note goes at once
        screen.query_one("#n_from", Input).focus()
        await pilot.press("8")  # from 8 with to 8: the rule is reported on `to`, while typing in `from`
        error = screen.query_one("#n_to-error", Static)
        assert error.display and "at least twice" in str(error.render())
        await pilot.press("backspace", "1", "6")
        assert not error.display and isinstance(app.screen, SetupScreen)


async def test_the_form_keeps_the_default_model_when_the_engine_lists_arrive(tmp_path, monkeypatch):
    async def engine_lists():
        return CATALOG  # "digits" listed first: the default is kept by name, not by place

    monkeypatch.setattr("dsd_tui.tui.screens.setup.load_catalog", engine_lists)
    app = DsdApp(runs_root=tmp_path)  # the fallback lists until the engine's arrive
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.catalog is CATALOG, what="the engine's lists")
        await pilot.pause()
        assert app.screen.query_one("#model").value == "digits-v"


async def test_the_runs_table_keeps_its_status_column_at_80_columns(tmp_path):
    for name in ("dsd+pd-gradual-linear-32to8-20240102-130000", "dsd-iterative-32to8-20240101-120000"):
        write_finished_run(tmp_path / name, updates=2000)
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#recent", DataTable)
        used = sum(column.get_render_width(table) for column in table.columns.values())
        assert used <= table.scrollable_content_region.width and table.max_scroll_x == 0
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert sorted(row[0][-7:] for row in rows) == ["-120000", "-130000"]  # shortened, time stamps kept
        assert [row[-1] for row in rows] == ["finished", "finished"]
