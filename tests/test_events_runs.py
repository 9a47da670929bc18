"""Real tiny `dsd distill` and `dsd train` runs write only events that parse strictly into their classes (no
unknown kind or field, every type right) and that the writer would write again byte for byte."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dsd_core import events as ev
from dsd_core import interrupt
from dsd_core.runs import RunDir
from dsd_tui.cli import app

runner = CliRunner()


def dsd(*args):
    return runner.invoke(app, [str(a) for a in args])


def typed_log(path) -> list[ev.Event]:
    lines = path.read_text().splitlines()
    events = [ev.parse(json.loads(line), strict=True) for line in lines]
    assert [ev.to_line(e) for e in events] == lines
    return events


@pytest.fixture
def ctrl_c_after(monkeypatch):
    """`ctrl_c_after(test)`: the first written event that passes `test` raises the Ctrl-C flag, as SIGINT would."""

    def arm(test):
        real = RunDir.write

        def write(self, event):
            real(self, event)
            if test(event):
                monkeypatch.setattr(RunDir, "write", real)
                monkeypatch.setattr(interrupt, "_requested", True)

        monkeypatch.setattr(RunDir, "write", write)

    return arm


def test_a_distill_run_interrupted_and_resumed_writes_typed_events(tiny_ckpt, tmp_path, ctrl_c_after):
    run = tmp_path / "run"
    ctrl_c_after(lambda e: isinstance(e, ev.LossEvent) and e.update == 2)
    args = ["--model", tiny_ckpt, "--schedule", "iterative", "--from", 8, "--to", 2, "--updates", 4, "--batch", 4,
            "--checkpoint-every", 2]
    result = dsd("distill", *args, "--run-dir", run)
    assert result.exit_code != 0 and "resume with" in result.output, result.output
    result = dsd("distill", "--resume", run)
    assert result.exit_code == 0, result.output
    events = typed_log(run / "events.jsonl")
    kinds = {e.kind for e in events}
    assert kinds == {"config", "samples", "stage", "loss", "histogram", "snapshot", "quality", "checkpoint",
                     "interrupted", "resume", "end"}, kinds
    assert all(e.step is None for e in events if hasattr(e, "step"))  # distill counts updates


def test_a_distill_run_of_nans_writes_warnings_then_an_error(tiny_ckpt, tmp_path, nan_dsd_loss):
    run = tmp_path / "run"
    result = dsd("distill", "--model", tiny_ckpt, "--from", 4, "--to", 2, "--updates", 25, "--batch", 2,
                 "--run-dir", run)
    assert result.exit_code != 0 and "non-finite" in result.output, result.output
    events = typed_log(run / "events.jsonl")
    assert {e.kind for e in events} >= {"warning", "error"}
    assert events[-1] == ev.ErrorEvent(time=events[-1].time, message="20 non-finite losses in a row")


def test_a_train_run_interrupted_and_resumed_writes_typed_events(tmp_path, ctrl_c_after):
    run = tmp_path / "run"
    ctrl_c_after(lambda e: isinstance(e, ev.CheckpointEvent) and e.step == 2)  # stops after step 3
    args = ["--data", "digits", "--steps", 4, "--batch", 8, "--channels", 16, "--mults", "1,2", "--attention", "",
            "--checkpoint-every", 2, "--sample-every", 2]
    result = dsd("train", *args, "--out", run)
    assert result.exit_code != 0 and "resume with" in result.output, result.output
    result = dsd("train", "--resume", run)
    assert result.exit_code == 0, result.output
    events = typed_log(run / "events.jsonl")
    kinds = {e.kind for e in events}
    assert kinds == {"config", "samples", "checkpoint", "interrupted", "resume", "loss", "end"}, kinds
    assert all(e.update is None for e in events if hasattr(e, "update"))  # train counts steps
    assert [e.step for e in events if isinstance(e, ev.InterruptedEvent | ev.ResumeEvent)] == [3, 3]
