"""The typed event log on its own: every kind from writer to reader, the line format of before, old and hostile
lines, and the readers' torn-line rules."""

from __future__ import annotations

import json

import pytest

from dsd_core import events as ev
from dsd_core import runs
from dsd_core.runs import RunDir, RunPaths
from dsd_tui.tui.runstate import RunState

# What the engine writes today, kind and fields in call order (train and distill shapes where they differ).
WRITTEN = [
    ("config", {"command": "distill", "version": "0.1.0", "threads": 1, "base_model": "tiny", "base_sha256": "ab",
                "distill": {"method": "dsd", "updates": 4}, "data": "", "stages": [{"steps": 8, "method": "dsd"}],
                "model_config": {"image_size": 8}}),
    ("config", {"command": "train", "version": "0.1.0", "threads": 1, "data": "digits", "data_spec": "digits",
                "num_images": 64, "model_config": {"image_size": 8}, "train": {"steps": 3}, "parameters": 1234}),
    ("resume", {"update": 2}),
    ("resume", {"step": 5}),
    ("stage", {"index": 0, "steps": 8, "method": "dsd", "target_steps": 4, "updates": 2}),
    ("loss", {"update": 1, "stage": 8, "method": "dsd", "nfe": 24, "loss": 0.25, "grad_norm": 1.5,
              "loss_by_pair": {"0": 0.2, "3": 0.3}}),
    ("loss", {"update": 2, "stage": 8, "method": "dsd", "nfe": 48, "loss": None, "skipped": True}),
    ("loss", {"step": 50, "loss": 0.1, "grad_norm": 0.5, "lr": 0.0002}),
    ("loss", {"step": 50, "loss": 0.1, "grad_norm": 0.5, "lr": 0.0002, "sd_loss": 0.3, "sd_nfe": 96,
              "histogram": {"finest_grid": [999, 499], "per_index": [1, 2], "per_timestep": {}}}),
    ("loss", {"step": 1, "loss": 0.1, "grad_norm": 0.5, "lr": 0.0002, "sd_loss": None, "sd_nfe": 0,
              "histogram": {"finest_grid": [999, 499], "per_index": [0, 0], "per_timestep": {}}}),
    ("histogram", {"update": 2, "finest_grid": [999, 874], "per_index": [3, 1], "per_timestep": {"999": 3, "874": 1}}),
    ("samples", {"update": 0, "path": "s/update_0000000.png", "label": "undistilled"}),
    ("samples", {"update": 2, "path": "s/update_0000002.png"}),
    ("samples", {"step": 3, "path": "s/step_3.png"}),
    ("snapshot", {"update": 2, "steps": 4, "path": "model-4steps.safetensors"}),
    ("quality", {"update": 2, "steps": 4, "mse": 0.01, "psnr": 26.02, "best": True}),
    ("checkpoint", {"update": 2, "path": "checkpoints/state.safetensors"}),
    ("stage_end", {"update": 300, "steps": 16, "skipped": 700, "checks": 2}),
    ("restore", {"update": 1000, "steps": 16, "psnr": 38.9, "path": "model-best-16steps.safetensors"}),
    ("checkpoint", {"step": 2, "path": "checkpoints/state.safetensors"}),
    ("warning", {"update": 2, "message": "non-finite loss: update skipped, affected trajectories restarted"}),
    ("error", {"message": "20 non-finite losses in a row"}),
    ("interrupted", {"update": 2}),
    ("interrupted", {"step": 3}),
    ("end", {"update": 4, "model": "model.safetensors", "nfe": {"updates": 96, "warmup": 32}, "skipped": 0,
             "wall_seconds": 1.5, "updates_run": 4}),
    ("end", {"step": 3, "model": "model.safetensors"}),
]


@pytest.fixture
def frozen_time(monkeypatch):
    monkeypatch.setattr(runs.time, "time", lambda: 1_700_000_000.1234)
    return 1_700_000_000.123


def test_every_kind_is_written_as_before_and_reads_back(tmp_path, frozen_time):
    run = RunDir(tmp_path / "run")
    for kind, fields in WRITTEN:
        run.event(kind, **fields)
    lines = run.events_path.read_text().splitlines()
    assert lines == [json.dumps({"event": kind, "time": frozen_time, **fields}) for kind, fields in WRITTEN]
    events = ev.read_events(run.events_path)
    assert [e.kind for e in events] == [kind for kind, _ in WRITTEN]
    assert {e.kind for e in events} == set(ev.KINDS)  # every kind is covered here
    assert events == [ev.make(kind, **fields, time=frozen_time) for kind, fields in WRITTEN]
    assert [ev.parse(json.loads(line), strict=True) for line in lines] == events
    assert runs.read_events(run.events_path) == [json.loads(line) for line in lines]


def test_a_typed_write_and_a_later_time(tmp_path, frozen_time):
    run = RunDir(tmp_path / "run")
    run.write(ev.StageEvent(index=1, steps=4, target_steps=2, updates=2))
    run.write(ev.ErrorEvent(message="boom", time=5.0))  # an event that has its time keeps it
    assert ev.read_events(run.events_path) == [
        ev.StageEvent(time=frozen_time, index=1, steps=4, target_steps=2, updates=2),
        ev.ErrorEvent(time=5.0, message="boom")]


@pytest.mark.parametrize("kind, fields", [
    ("los", {"update": 1, "loss": 0.1}),  # misspelt kind
    ("loss", {"updat": 1, "loss": 0.1}),  # misspelt field
    ("stage", {"index": 0, "steps": 8, "target_steps": 4}),  # a field missing
    ("end", {"update": 1}),
])
def test_a_misspelt_kind_or_field_fails_before_writing(tmp_path, kind, fields):
    run = RunDir(tmp_path / "run")
    with pytest.raises(TypeError):
        run.event(kind, **fields)
    assert not run.events_path.exists()


def test_old_lines_still_read():
    """Lines without a time, without the fields later versions added, and with fields a newer dsd adds."""
    lines = ['{"event": "config", "distill": {"method": "dsd"}}',
             '{"event": "stage", "index": 0, "steps": 8, "target_steps": 4, "updates": 10}',
             '{"event": "loss", "time": 1700000000, "update": 1, "nfe": 8, "loss": 0.5}',
             '{"event": "samples", "update": 0, "path": "a.png", "label": "undistilled", "seed": 3}',
             '{"event": "end", "model": "m.safetensors"}']
    assert [ev.parse_line(line) for line in lines] == [
        ev.ConfigEvent(distill={"method": "dsd"}),
        ev.StageEvent(index=0, steps=8, target_steps=4, updates=10),
        ev.LossEvent(time=1700000000, update=1, nfe=8, loss=0.5),
        ev.SamplesEvent(update=0, path="a.png", label="undistilled"),
        ev.EndEvent(model="m.safetensors")]
    with pytest.raises(ev.EventError, match="unknown fields"):
        ev.parse(json.loads(lines[3]), strict=True)


HOSTILE = [
    b"not json", b"", b"[1, 2]", b"null", b'"loss"', b'{"update": 3}', b'{"event": 3}', b'{"event": null}',
    b'{"event": "loss", "update": "x", "loss": 1.0}',  # a field of the wrong type
    b'{"event": "loss", "update": 1}',  # a required field missing
    b'{"event": "loss", "update": true, "loss": 1.0}',  # a bool is not a count
    b'{"event": "stage"}', b'{"event": "stage", "index": 0, "steps": "8", "target_steps": 4, "updates": 1}',
    b'{"event": "histogram", "finest_grid": [1, "x"], "per_index": []}',
    b'{"event": "end", "model": ["m"]}', b'{"event": "end", "model": "m", "nfe": {"updates": "many"}}',
    b'{"event": "error", "time": "yesterday", "message": "m"}', b'{"event": "warning", "message": null}',
    b'{"event": "config", "stages": {"steps": 8}}', b'{"event": "config", "threads": 1.5}',
    b'\xff\xfe{"event": "end", "model": "m"}', b'{"event": "end", "model": "m"',
]


@pytest.mark.parametrize("line", HOSTILE)
def test_a_hostile_line_is_skipped(line):
    assert ev.parse_line(line) is None


def test_readers_skip_hostile_lines_and_keep_unknown_kinds(tmp_path):
    log = tmp_path / "events.jsonl"
    good = [b'{"event": "loss", "time": 1.0, "update": 1, "loss": 0.5}', b'{"event": "telemetry", "time": 2.0, "x": 1}',
            b'{"event": "end", "time": 3.0, "model": "m"}']
    log.write_bytes(b"\n".join([HOSTILE[0], good[0], *HOSTILE[1:], *good[1:]]) + b"\n")
    expected = [ev.LossEvent(time=1.0, update=1, loss=0.5),
                ev.UnknownEvent(time=2.0, name="telemetry", values={"x": 1}),
                ev.EndEvent(time=3.0, model="m")]
    assert ev.read_events(log) == expected
    tail = ev.EventTail(log)
    assert tail.read_new() == expected and tail.skipped == len(HOSTILE)
    assert ev.to_line(expected[1]) == good[1].decode()  # kept as it was
    state = RunState()
    for event in expected:
        state.apply(event)
    assert state.events == 3 and state.last_event_time == 3.0 and state.ended  # the unknown one counts as activity


def test_a_torn_last_line_is_not_an_event(tmp_path):
    log = tmp_path / "events.jsonl"
    log.write_text('{"event": "interrupted", "update": 2}\n{"event": "end", "model": "m"}')
    assert ev.read_events(log) == [ev.InterruptedEvent(update=2)]
    tail = ev.EventTail(log)
    assert tail.read_new() == [ev.InterruptedEvent(update=2)]
    with open(log, "a") as f:
        f.write("\n")
    assert tail.read_new() == [ev.EndEvent(model="m")]
    log.write_text('{"event": "resume", "update": 1}\n')  # replaced by a shorter log: start over
    assert tail.read_new() == [ev.ResumeEvent(update=1)]
    with pytest.raises(OSError):
        ev.read_events(tmp_path / "missing.jsonl")


def test_the_last_bytes_of_a_log_start_at_a_whole_line(tmp_path):
    log = tmp_path / "events.jsonl"
    lines = [f'{{"event": "resume", "update": {u}}}\n' for u in range(10, 20)]
    log.write_text("".join(lines))
    n = len(lines[-1])
    assert ev.read_events(log, last_bytes=n) == [ev.ResumeEvent(update=19)]  # the cut falls on a line start
    assert ev.read_events(log, last_bytes=n + 5) == [ev.ResumeEvent(update=19)]  # mid-line: that line is dropped
    assert len(ev.read_events(log, last_bytes=10**6)) == 10


def test_run_paths_touch_nothing(tmp_path):
    paths = RunPaths(tmp_path / "run")
    assert paths.events_path == tmp_path / "run" / "events.jsonl" and paths.onnx.name == "onnx"
    assert paths.state_path == tmp_path / "run" / "checkpoints" / runs.STATE_FILE
    assert not (tmp_path / "run").exists()
    run = RunDir(tmp_path / "run")
    assert run.checkpoints.is_dir() and run.samples.is_dir() and run.config_path == paths.config_path
