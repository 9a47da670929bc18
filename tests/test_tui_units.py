"""The app's torch-free parts on their own: tailing the log, folding events, the form's checks, grids."""

from __future__ import annotations

import signal
import sys
import time

import numpy as np
import pytest

from dsd_core.events import ConfigEvent, EndEvent, EventTail, LossEvent, ResumeEvent, StageEvent, read_events
from dsd_tui.tui.grid import compose, fit, tiles_from_grid, to_tiles
from dsd_tui.tui.recent import recent_runs
from dsd_tui.tui.runstate import RunState, smooth
from dsd_tui.tui.setup_form import CHECKPOINT, DEFAULTS, check, short_float
from dsd_tui.tui.widgets.histogram import columns

from .tui_helpers import CATALOG, grid_png, write_finished_run


def test_tail_waits_for_the_newline_of_a_torn_line(tmp_path):
    log = tmp_path / "events.jsonl"
    tail = EventTail(log)
    assert tail.read_new() == []  # no file yet
    log.write_text('{"event": "config"}\n{"event": "lo')
    assert [type(e) for e in tail.read_new()] == [ConfigEvent]
    assert tail.read_new() == []
    with open(log, "a") as f:
        f.write('ss", "update": 1, "loss": 0.5}\nnot json\n')
    assert tail.read_new() == [LossEvent(update=1, loss=0.5)] and tail.skipped == 1
    log.write_text('{"event": "end", "model": "m"}\n')  # replaced by a shorter log: start over
    assert tail.read_new() == [EndEvent(model="m")]


def test_state_folds_a_run_and_resume_drops_the_redone_updates(tmp_path):
    run = write_finished_run(tmp_path / "run", updates=40)
    state = RunState()
    for event in read_events(run / "events.jsonl"):
        state.apply(event)
    assert state.ended and state.update == 40 and state.total_updates == 40
    assert state.updates == list(range(1, 41)) and state.histogram == [40, 0, 40, 0, 20, 0, 20, 0]
    assert state.stage_text() == "4→2 (2/2)" and state.nfe == 8 * 40 + 32
    assert state.rate() == pytest.approx(4.0)  # loss events every 0.25 s
    assert state.first_preview.label == "undistilled" and state.latest_preview.update == 40
    state.apply(ResumeEvent(update=30))
    assert state.updates[-1] == 30 and len(state.losses) == 30 and state.latest_preview is None
    assert state.rate() is None  # the pause before a resume must not count as slowness
    for u, t in ((31, 1_800_000_000.0), (32, 1_800_000_000.5)):
        state.apply(LossEvent(time=t, update=u, nfe=0, loss=0.1))
    assert state.rate() == pytest.approx(2.0)


def test_stage_starts_mark_the_loss_plot_and_a_resume_drops_the_redone_ones(tmp_path):
    from dsd_tui.tui.widgets.loss_plot import LossPlot

    run = write_finished_run(tmp_path / "run", updates=40)
    state = RunState()
    for event in read_events(run / "events.jsonl"):
        state.apply(event)
    assert state.stage_starts == [1, 21] and state.threads == 1
    plot = LossPlot()
    plot.updates, plot.stage_starts = state.updates, state.stage_starts
    assert plot.boundaries() == [20.5]  # between the stages' updates; none before the first loss
    state.apply(ResumeEvent(update=20))  # the checkpoint at the stage's end: the stage event comes again
    assert state.stage_starts == [1]
    state.apply(StageEvent(index=1, steps=4, target_steps=2, updates=20))
    assert state.stage_starts == [1, 21]


def test_a_malformed_event_becomes_a_warning_not_an_exception():
    """A decoded line handed over as a dict is parsed first (a tail skips such lines instead)."""
    state = RunState()
    state.apply({"event": "loss", "update": "x"})
    state.apply({"event": "stage"})
    assert len(state.warnings) == 2 and state.update == 0


def test_smoothing_is_bias_corrected():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    assert smooth([0.0, 10.0], alpha=0.5)[-1] == pytest.approx(10 * 0.5 / 0.75)


def form(**changes) -> dict[str, str]:
    return {**DEFAULTS, **changes}


def check_form(**changes):
    return check(form(**changes), CATALOG.methods, CATALOG.schedules, CATALOG.models)


def test_form_defaults_make_the_documented_command(tmp_path):
    request, errors = check_form()
    assert errors == {}
    argv = request.argv(tmp_path / "r")
    cmd = argv[argv.index("distill"):]
    assert cmd[:13] == ["distill", "--model", "digits-v", "--method", "dsd-stage", "--schedule", "iterative",
                        "--from", "32", "--to", "8", "--updates", "4000"]
    assert DEFAULTS["lr"] == "3e-5" and cmd[cmd.index("--lr") + 1] == "3e-5" and request.lr == 3e-5
    assert cmd[cmd.index("--threads") + 1] == "1" and cmd[cmd.index("--run-dir") + 1] == str(tmp_path / "r")


@pytest.mark.parametrize("changes, field, words", [
    ({"updates": "many"}, "updates", "whole number"),
    ({"batch": "0"}, "batch", "at least 1"),
    ({"lr": "fast"}, "lr", "number"),
    ({"lr": "-1"}, "lr", "between"),
    ({"n_from": "24", "n_to": "8"}, "n_from", "iterative"),
    ({"n_from": "8", "n_to": "8"}, "n_to", "at least twice"),
    ({"schedule": "gradual-linear", "n_from": "33", "n_to": "4"}, "n_from", "even"),
    ({"method": "magic"}, "method", "choose one of"),
    ({"model": CHECKPOINT, "path": ""}, "path", "give a checkpoint"),
    ({"model": CHECKPOINT, "path": "/no/such/file.safetensors"}, "path", "does not exist"),
])
def test_bad_fields_get_their_own_error(changes, field, words):
    request, errors = check_form(**changes)
    assert request is None and list(errors) == [field] and words in errors[field]


@pytest.mark.parametrize("value, text", [(3e-5, "3e-5"), (1e-4, "0.0001"), (2.5e-7, "2.5e-7"), (1e20, "1e20"),
                                         (0.001, "0.001")])
def test_the_form_writes_numbers_as_people_do_and_reads_them_back_equal(value, text):
    assert short_float(value) == text and float(text) == value


def test_the_help_has_no_markup_left_and_fits_80_by_24():
    from textual.content import Content

    from dsd_tui.tui.screens.dialogs import HELP

    lines = Content.from_markup(HELP).plain.splitlines()
    assert "[ / ]" in "\n".join(lines) and not any("[/" in line or "[[" in line for line in lines)
    assert len(lines) <= 21 and max(map(len, lines)) <= 76  # 80×24 less the box's border and padding


def test_long_run_names_keep_their_head_and_time_stamp():
    from dsd_tui.tui.screens.setup import shorten

    name = "dsd-iterative-32to8-20240101-120000"
    assert shorten(name, 40) == name
    assert shorten(name, 20) == "dsd-ite…40101-120000" and len(shorten(name, 20)) == 20


def test_sampler_says_why_the_step_count_does_not_change():
    from dsd_tui.tui.screens.sampler import steps_limit

    assert steps_limit([8], 8, 1).startswith("only 8 steps exported")
    assert "fewest exported (2, 4)" in steps_limit([2, 4], 2, -1)


def test_process_meter_reads_cpu_and_memory_at_most_once_a_second():
    import os

    from dsd_tui.tui.resources import ProcessMeter

    now = [0.0]
    meter = ProcessMeter(clock=lambda: now[0])
    first = meter.text(os.getpid())
    assert first.startswith("mem ") and "MiB" in first  # no CPU % before a second reading
    sum(range(200_000))
    now[0] = 0.5
    assert meter.text(os.getpid()) == first  # cached
    now[0] = 1.0
    assert meter.text(os.getpid()).startswith("CPU ")
    assert meter.text(None) == ""


def test_process_meter_shows_nothing_for_a_process_that_is_gone(tmp_path):
    import subprocess

    from dsd_tui.tui.resources import ProcessMeter, cpu_and_memory

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert cpu_and_memory(child.pid) is None and ProcessMeter().text(child.pid) == ""


def test_gpu_use_shows_only_where_nvml_knows_the_process(monkeypatch):
    import os
    import types

    from dsd_tui.tui.resources import Gpu

    me = types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=3 * 2**30)
    nvml = types.SimpleNamespace(nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 1,
                                 nvmlDeviceGetHandleByIndex=lambda i: i,
                                 nvmlDeviceGetComputeRunningProcesses=lambda h: [me],
                                 nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=40))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert Gpu().text(os.getpid()) == "GPU0 40% 3.0 GiB" and Gpu().text(1) == ""
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: nothing, and never asked again
    gpu = Gpu()
    assert gpu.text(os.getpid()) == "" and gpu.off


def test_naive_ignores_from_and_a_checkpoint_path_is_passed_on(tiny_ckpt):
    request, errors = check_form(schedule="naive", n_from="4", n_to="8", model=CHECKPOINT, path=str(tiny_ckpt))
    assert errors == {} and request.model == str(tiny_ckpt)


def test_grid_tiles_come_back_at_native_size(tmp_path):
    from dsd_core.images import make_grid

    tiles = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)
    tiles[:, 0, 0, 0] = 96  # the gap grey inside tiles must not split them
    make_grid(tiles).save(tmp_path / "g.png")
    back = tiles_from_grid(tmp_path / "g.png")
    assert back.shape == (64, 8, 8) and np.array_equal(back, tiles[..., 0])


def test_fit_and_compose_keep_one_pixel_per_half_cell():
    assert fit(8, 8, cells_w=38, cells_h=10, count=64) == (4, 2)  # 4·9+1 = 37 ≤ 38; 2·9+1 = 19 ≤ 20
    assert fit(8, 8, cells_w=200, cells_h=100, count=6) == (6, 1)
    picture = compose(np.full((6, 8, 8), 255, np.uint8), cols=4, rows=2)
    assert picture.size == (37, 19)
    images = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
    assert to_tiles(images).shape == (3, 8, 8) and to_tiles(images).dtype == np.uint8


def test_histogram_groups_bins_when_columns_run_out():
    assert columns([1, 2, 3, 4, 5], 10) == [1, 2, 3, 4, 5]
    assert columns([1, 2, 3, 4, 5], 2) == [6, 9]


def test_recent_runs_say_how_far_each_got(tmp_path):
    write_finished_run(tmp_path / "a", updates=40)
    write_finished_run(tmp_path / "b", updates=40, ended=False)
    (tmp_path / "junk").mkdir()
    grid_png(tmp_path / "c" / "x.png", 0)
    runs = {r.path.name: r for r in recent_runs(tmp_path)}
    assert set(runs) == {"a", "b"}
    assert runs["a"].status == "finished" and not runs["a"].resumable
    assert runs["b"].status == "stopped" and runs["b"].update == 40 and not runs["b"].resumable  # no checkpoint
    (tmp_path / "b" / "checkpoints").mkdir()
    (tmp_path / "b" / "checkpoints" / "state.safetensors").write_bytes(b"")
    assert {r.path.name: r for r in recent_runs(tmp_path)}["b"].resumable


def _stopped_child_ignoring(signals: str, tmp_path, monkeypatch):
    """A child that ignores `signals` (e.g. "SIGINT, SIGTERM"), started as the app starts runs, then asked to
    stop with a grace of 0.2 s; returns it and the deadline of the test."""
    from dsd_tui.tui import process as process_module

    monkeypatch.setattr(process_module, "STOP_GRACE_S", 0.2)
    ignore = "".join(f"signal.signal(signal.{name.strip()}, signal.SIG_IGN); " for name in signals.split(","))
    code = f"import signal, sys, time; {ignore}print('ready', flush=True); time.sleep(60)"
    proc = process_module.RunProcess.start([sys.executable, "-c", code], tmp_path)
    deadline = time.monotonic() + 30
    while b"ready" not in (tmp_path / process_module.LOG_FILE).read_bytes():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    proc.stop()
    return proc, deadline


def test_a_run_that_ignores_sigint_gets_sigterm_after_the_grace(tmp_path, monkeypatch):
    """Escalation from SIGINT to SIGTERM (a regression: poll → signal → poll recursed without end)."""
    proc, deadline = _stopped_child_ignoring("SIGINT", tmp_path, monkeypatch)
    time.sleep(0.5)
    assert proc.poll() is None  # SIGINT ignored; SIGTERM sent by this poll, past the grace
    while proc.poll() is None:
        assert time.monotonic() < deadline, "SIGTERM did not end the child"
        time.sleep(0.05)
    assert proc.poll() == -signal.SIGTERM


def test_a_run_that_ignores_sigint_and_sigterm_gets_sigkill_a_grace_later(tmp_path, monkeypatch):
    """SIGTERM checkpoints like SIGINT, so a run stuck in a native call may outlive both: SIGKILL ends it."""
    proc, deadline = _stopped_child_ignoring("SIGINT, SIGTERM", tmp_path, monkeypatch)
    while proc.poll() is None:
        assert time.monotonic() < deadline, "SIGKILL did not end the child"
        time.sleep(0.05)
    assert proc.poll() == -signal.SIGKILL
