"""SVG snapshots of the screens at 80×24 and 120×40 (pytest-textual-snapshot; `--snapshot-update` rewrites
them after an intended change). Only deterministic content: a fixed event log, relative paths, a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsd_tui.app import DsdApp

from .tui_helpers import CATALOG, use_fake_sampler, write_finished_run

SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_finished_run(Path("runs") / "demo", updates=40)
    return tmp_path


@pytest.mark.parametrize("size", SIZES)
def test_setup_screen(in_tmp, snap_compare, size):
    assert snap_compare(DsdApp(runs_root=Path("runs"), catalog=CATALOG), terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_run_screen_of_a_finished_run(in_tmp, snap_compare, size):
    app = DsdApp(attach=Path("runs") / "demo", runs_root=Path("runs"), catalog=CATALOG)
    assert snap_compare(app, terminal_size=size)


def test_run_screen_with_a_run_error(in_tmp, snap_compare):
    run = write_finished_run(Path("runs") / "broken", updates=40, ended=False)
    with open(run / "events.jsonl", "a") as f:
        f.write('{"event": "error", "time": 1700000010.0, "message": "20 non-finite losses in a row"}\n')
    app = DsdApp(attach=run, runs_root=Path("runs"), catalog=CATALOG, hang_after=1e12)
    assert snap_compare(app, terminal_size=(80, 24))


def test_help(in_tmp, snap_compare):
    assert snap_compare(DsdApp(runs_root=Path("runs"), catalog=CATALOG), terminal_size=(80, 24),
                        press=["question_mark"])


def test_sampler_screen(in_tmp, snap_compare, monkeypatch):
    use_fake_sampler(monkeypatch)

    async def open_sampler(pilot):
        pilot.app.open_sampler({2: Path("m-2steps.onnx"), 4: Path("m-4steps.onnx")}, Path("."))
        await pilot.pause(0.3)

    assert snap_compare(DsdApp(runs_root=Path("runs"), catalog=CATALOG), terminal_size=(80, 24),
                        run_before=open_sampler)
