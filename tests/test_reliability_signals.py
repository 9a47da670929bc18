"""Issue 18, "cleanup and signals": SIGTERM mid-write deletes the temporary file and says one line; what SIGKILL
leaves is swept by the next write of the same target (and nothing else is); SIGTERM during a run checkpoints
like Ctrl-C; a cached export onnxruntime cannot open is made again; previews and exports stay in their run."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from dsd_core import atomic, interrupt
from dsd_core.checkpoint import load_tensors
from dsd_core.run_lock import holder
from dsd_core.runs import read_events
from dsd_tui.tui import export_job
from dsd_tui.tui.grid import UnsafePreview, tiles_from_grid

from .reliability_helpers import assert_one_line_error, dsd, listing

DSD = [sys.executable, "-c", "from dsd_tui.cli import main; main()"]


def start(*args, pause: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "NO_COLOR": "1", atomic.PAUSE_ENV: f"{pause}:60" if pause else ""}
    return subprocess.Popen(DSD + [str(a) for a in args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(proc: subprocess.Popen, ready, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def mid_write(folder: Path, name: str):
    """True once a temporary sibling of NAME holds data (a file with bytes, a folder with files)."""
    def ready() -> bool:
        return any(p.stat().st_size if p.is_file() else any(p.iterdir()) for p in folder.glob(f".{name}.*.tmp"))
    return ready


def outputs(tiny_ckpt):
    """(output name, command without the output) per output kind."""
    sample = ["sample", "--model", tiny_ckpt, "--steps", 1, "--num", 4, "--threads", 1, "--force"]
    return {"npz": ("x.npz", sample), "folder": ("imgs", sample),
            "export": ("m.onnx", ["export", "--onnx", "--model", tiny_ckpt, "--steps", 2, "--threads", 1, "--force"])}


@pytest.mark.parametrize("kind", ["npz", "folder", "export"])
def test_sigterm_mid_write_deletes_the_temp_file_and_says_one_line(tiny_ckpt, tmp_path, kind):
    name, args = outputs(tiny_ckpt)[kind]
    out = tmp_path / name
    if kind == "folder":
        out.mkdir()
        (out / "old.png").write_bytes(b"old")
    else:
        out.write_bytes(b"old")
    before = listing(tmp_path)
    proc = start(*args, out, pause=name)
    wait_for(proc, mid_write(tmp_path, name))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    said = [line for line in err.splitlines() if line.startswith(("interrupted", "error", "Traceback"))]
    assert said == [f"interrupted: stopped by SIGTERM; {out} is as it was"], err  # (export's phase line before it)
    assert err.rstrip().endswith(said[0])
    assert listing(tmp_path) == before and not temps(tmp_path)


def test_sigkill_leaves_temp_files_that_the_next_write_of_that_target_sweeps(tiny_ckpt, tmp_path):
    name, args = outputs(tiny_ckpt)["npz"]
    proc = start(*args, tmp_path / name, pause=name)
    wait_for(proc, mid_write(tmp_path, name))
    proc.kill()
    proc.wait(30)
    (left,) = temps(tmp_path)  # the kill left its temp file: named for the target and the dead writer
    assert left.name.startswith(f".{name}.{proc.pid}.")
    dead, alive = proc.pid, os.getpid()
    stale_folder = tmp_path / f".{name}.{dead}.abcd_123.old.tmp"  # a folder write's old copy, killed mid-swap
    stale_folder.mkdir()
    (stale_folder / "a.png").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"keep")
    kept = {  # what must survive: a live writer's, another target's, other names, a link (not followed either)
        f".{name}.{alive}.abcdefgh.tmp": b"live", f".{name}x.{dead}.abcdefgh.tmp": b"other target",
        f".y{name}.{dead}.abcdefgh.tmp": b"other target", f".{name}.{dead}.tmp": b"not our pattern",
        f"{name}.{dead}.abcdefgh.tmp": b"not hidden", f".{name}.{dead}.abcdefgh.tmp.bak": b"not ours",
    }
    for kept_name, data in kept.items():
        (tmp_path / kept_name).write_bytes(data)
    (tmp_path / f".{name}.{dead}.zzzzzzzz.tmp").symlink_to(outside, target_is_directory=True)
    result = dsd(*args, tmp_path / name)
    assert result.exit_code == 0, result.output
    assert not left.exists() and not stale_folder.exists()
    assert {n: (tmp_path / n).read_bytes() for n in kept} == kept
    assert (tmp_path / f".{name}.{dead}.zzzzzzzz.tmp").is_symlink() and (outside / "precious").read_bytes() == b"keep"
    assert np.load(tmp_path / name)["arr_0"].shape[0] == 4


def sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # a handler that raises ends this at once


def test_sigterm_in_a_write_unwinds_and_restores_the_handler(tmp_path):
    """In-process: the handler is set only around the write, and only where SIGTERM is not handled already."""
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # else the kills below would not be ours to test
    with pytest.raises(interrupt.Terminated, match="stopped by SIGTERM"), atomic.atomic_file(tmp_path / "f") as f:
        f.write(b"half")
        sigterm_self()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(interrupt.Terminated, match="stopped by SIGTERM"), atomic.atomic_folder(tmp_path / "d") as w:
        w("a.png", b"half")
        sigterm_self()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and list(tmp_path.iterdir()) == []


class SwapInterrupted:
    """`os` for dsd_core.atomic in which SIGTERM lands as the new folder is being renamed into place."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def rename(src, dst):
        if Path(src).name.endswith(".tmp"):
            raise interrupt.Terminated("stopped by SIGTERM; test")
        os.rename(src, dst)


def test_sigterm_while_a_folder_is_swapped_puts_the_old_one_back(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old.png").write_bytes(b"old")
    before = listing(tmp_path)
    monkeypatch.setattr(atomic, "os", SwapInterrupted())
    with pytest.raises(interrupt.Terminated), atomic.atomic_folder(tmp_path / "d") as write:
        write("new.png", b"new")
    assert listing(tmp_path) == before and not temps(tmp_path)


def test_sigterm_in_a_run_sets_the_stop_flag_and_a_second_stops_at_once(tmp_path):
    """Inside a run the first SIGTERM only asks for a stop (the checkpoint write in flight is not cut short);
    the second raises, as a second Ctrl-C does."""
    with interrupt.stop_at_update_boundary():
        with atomic.atomic_file(tmp_path / "state.bin") as f:
            f.write(b"state")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert interrupt.stop_requested() and (tmp_path / "state.bin").read_bytes() == b"state"
        with pytest.raises(KeyboardInterrupt):
            sigterm_self()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and not interrupt.stop_requested()


RUNS = {
    "distill": ("update", ["distill", "--schedule", "iterative", "--from", "8", "--to", "2", "--updates", "400",
                           "--batch", "4", "--checkpoint-every", "1000", "--sample-every", "1000", "--threads", "1",
                           "--run-dir"]),
    "train": ("step", ["train", "--data", "digits", "--steps", "4000", "--batch", "8", "--channels", "16",
                       "--mults", "1", "--attention", "", "--checkpoint-every", "1000", "--sample-every", "1000",
                       "--threads", "1", "--out"]),
}


@pytest.mark.parametrize("command", RUNS)
def test_sigterm_during_a_run_checkpoints_and_says_how_to_resume(tiny_ckpt, tmp_path, command):
    unit, args = RUNS[command]
    run = tmp_path / "run"
    proc = start(*(args[:1] + (["--model", tiny_ckpt] if command == "distill" else []) + args[1:]), run)
    wait_for(proc, lambda: (run / "events.jsonl").exists()
             and any(e["event"] == "loss" for e in read_events(run / "events.jsonl")))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (stopped,) = [e for e in read_events(run / "events.jsonl") if e["event"] == "interrupted"]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == (f"interrupted: checkpoint at {unit} {stopped[unit]} saved; resume with: dsd {command} "
                         f"--resume {run}")
    assert "Traceback" not in err and not temps(run) and holder(run) is None  # the run's lock went with it
    assert load_tensors(run / "checkpoints" / "state.safetensors")[1][unit] == stopped[unit]


def test_an_ort_cache_file_onnxruntime_cannot_open_is_exported_again(tiny_ckpt, tmp_path, monkeypatch):
    """Its metadata names the model (so the metadata check passes), but a weight is torn."""
    monkeypatch.setenv("DSD_CACHE_DIR", str(tmp_path / "cache"))
    args = ["sample", "--backend", "ort", "--model", tiny_ckpt, "--steps", 2, "--num", 4, "--threads", 1, "--force",
            tmp_path / "a.npz"]
    first = dsd(*args)
    assert first.exit_code == 0, first.output
    expected = np.load(tmp_path / "a.npz")["arr_0"]
    (cached,) = (tmp_path / "cache" / "onnx").iterdir()
    proto = onnx.load(str(cached))
    weight = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    weight.raw_data = weight.raw_data[: len(weight.raw_data) // 2]
    onnx.save(proto, str(cached))
    result = dsd(*args)
    assert result.exit_code == 0, result.output
    assert f"the cached export {cached} is not this model's (it is not a readable ONNX model" in result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["arr_0"], expected)
    again = dsd(*args)  # repaired for good: no second export
    assert again.exit_code == 0 and "exporting" not in again.stderr, again.output


def preview_png(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def test_previews_are_read_only_inside_the_run_folder_and_never_through_links(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    (run / "samples").mkdir(parents=True)
    outside.mkdir()
    (run / "events.jsonl").write_text("")
    secret = preview_png(outside / "secret.png")
    good = preview_png(run / "samples" / "update-4.png")
    assert tiles_from_grid(good, run).shape == (1, 8, 8) and tiles_from_grid(good).shape == (1, 8, 8)
    (run / "samples" / "linked.png").symlink_to(secret)
    os.mkfifo(run / "samples" / "fifo.png")  # would hang an open without O_NONBLOCK
    (run / "linked").symlink_to(outside, target_is_directory=True)
    Image.new("L", (4200, 4200)).save(run / "samples" / "huge.png")  # 17.6 M pixels: above the pixel limit
    refused = {run / "samples" / "linked.png": "is a symbolic link", run / "samples" / "fifo.png": "regular file",
               run / "linked" / "secret.png": "is a symbolic link", secret: "not inside the run folder",
               run / "samples" / ".." / ".." / "outside" / "secret.png": "not inside the run folder",
               run / "samples" / "huge.png": "pixels, above"}
    for path, why in refused.items():
        with pytest.raises(UnsafePreview, match=why):
            tiles_from_grid(path, run)
    for path in list(refused)[:3]:  # the app's call (no run folder given) refuses links and FIFOs too
        with pytest.raises(UnsafePreview):
            tiles_from_grid(path)
    assert issubclass(UnsafePreview, ValueError)  # TileGrid.load_grid shows nothing for it, as for a torn file


def test_an_export_into_a_linked_run_folder_is_refused(tiny_ckpt, tmp_path, capsys):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir()
    elsewhere.mkdir()
    (run / "events.jsonl").write_text("")
    (run / "onnx").symlink_to(elsewhere, target_is_directory=True)
    (run / "samples").symlink_to(elsewhere, target_is_directory=True)
    before = listing(tmp_path)
    assert_one_line_error(dsd("export", "--onnx", "--model", tiny_ckpt, "--steps", 2, run / "onnx" / "m.onnx"),
                          f"{run / 'onnx'} is a symbolic link; dsd writes only inside the run folder")
    assert_one_line_error(dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 4, run / "samples" / "s.png"),
                          f"{run / 'samples'} is a symbolic link")
    assert export_job.main([str(tiny_ckpt), str(run / "onnx"), "2"]) == 2  # the app's export job
    assert "is a symbolic link" in capsys.readouterr().out
    assert listing(tmp_path) == before and list(elsewhere.iterdir()) == []
