"""A run writes nothing outside its folder, whatever links the folder holds (docs/reliability.md, rows 42–46):
files written in place (the event log, the lock) are opened without following links and refused if linked;
whole files are replaced by a rename, which replaces a link; linked subfolders are refused. Every case compares
the bytes of the files outside before and after."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from dsd_core.atomic import atomic_write_bytes
from dsd_core.data import load_digits
from dsd_core.errors import DsdError
from dsd_core.train import TrainConfig, Trainer
from dsd_tui.tui.process import LOG_FILE, PID_FILE, RunProcess

from .conftest import TINY
from .reliability_helpers import assert_one_line_error, dsd, listing
from .run_helpers import resume_args, stopped_run, tiny_distiller


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    return stopped_run(tmp_path_factory.mktemp("made"))


@pytest.fixture
def run(made, tmp_path) -> Path:
    """A fresh copy of the stopped run, beside a folder `outside` of files a link may point to."""
    (tmp_path / "outside").mkdir()
    return Path(shutil.copytree(made, tmp_path / "run", symlinks=True))


def outside_file(tmp_path: Path, name: str, data: bytes = b'{"event": "not yours"') -> Path:
    path = tmp_path / "outside" / name
    path.write_bytes(data)  # no newline at the end: a repair would cut it
    return path


def link_events(run, tmp_path):
    (run / "events.jsonl").unlink()
    (run / "events.jsonl").symlink_to(outside_file(tmp_path, "events.jsonl"))


def hard_link_events(run, tmp_path):
    (run / "events.jsonl").unlink()
    os.link(outside_file(tmp_path, "events.jsonl"), run / "events.jsonl")


def fifo_events(run, tmp_path):
    (run / "events.jsonl").unlink()
    os.mkfifo(run / "events.jsonl")


def link_lock(run, tmp_path):
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(outside_file(tmp_path, "lock"))


def link_folder(name):
    def swap(run, tmp_path):
        moved = shutil.move(run / name, tmp_path / "outside" / name)
        outside_file(tmp_path, f"{name}/.stale.png.1234.tmp")  # what a repair would delete, were it followed
        (run / name).symlink_to(moved, target_is_directory=True)

    return swap


@pytest.mark.parametrize("swap, needle", [
    (link_events, "events.jsonl is a symbolic link"),
    (hard_link_events, "events.jsonl has other hard links"),
    (fifo_events, "events.jsonl is not a regular file"),
    (link_lock, ".lock is a symbolic link"),
    (link_folder("samples"), "samples is a symbolic link"),
    (link_folder("checkpoints"), "checkpoints is a symbolic link"),
], ids=["events-symlink", "events-hardlink", "events-fifo", "lock-symlink", "samples-folder", "checkpoints-folder"])
def test_a_resume_refuses_links_it_would_write_through(run, tmp_path, swap, needle):
    swap(run, tmp_path)
    outside = listing(tmp_path / "outside")
    assert_one_line_error(dsd(*resume_args(run)), needle)
    assert listing(tmp_path / "outside") == outside


def test_linked_files_are_replaced_never_written_through(run, tmp_path):
    """The state, the final model, a preview and the config as links to files outside: the resume reads what
    they point to and replaces each link it writes by a file of its own."""
    links = {"checkpoints/state.safetensors": (run / "checkpoints" / "state.safetensors").read_bytes(),
             "model.safetensors": b"not a model", "samples/update_0000008.png": b"not a png",
             "config.json": (run / "config.json").read_bytes()}
    for name, data in links.items():
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(outside_file(tmp_path, name.replace("/", "-"), data))
    outside = listing(tmp_path / "outside")
    result = dsd(*resume_args(run))
    assert result.exit_code == 0, result.output
    assert listing(tmp_path / "outside") == outside
    written = [n for n in links if n != "config.json"]  # a resume never rewrites its config
    assert not any((run / n).is_symlink() for n in written) and (run / "config.json").is_symlink()


def test_a_dangling_link_is_not_followed_to_make_a_file_outside(made, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "events.jsonl").symlink_to(tmp_path / "made-by-dsd.jsonl")
    result = dsd("distill", "--model", made.parent / "tiny.safetensors", "--run-dir", fresh, "--updates", 2,
                 "--ema", 0.5, "--threads", 1)
    assert_one_line_error(result, "events.jsonl is a symbolic link")
    assert not (tmp_path / "made-by-dsd.jsonl").exists()
    assert [p.name for p in fresh.iterdir()] == ["events.jsonl"]  # refused before anything is written


def test_a_folder_swapped_for_a_link_mid_run_is_refused(made, tmp_path):
    (tmp_path / "outside").mkdir()
    d = tiny_distiller(made.parent / "tiny.safetensors", tmp_path / "r")

    def swap(update, event):
        if update == 2:  # before the preview and checkpoint of update 4
            shutil.rmtree(d.run.samples)
            d.run.samples.symlink_to(tmp_path / "outside", target_is_directory=True)

    with pytest.raises(DsdError, match="samples is a symbolic link"):
        d.run_loop(swap)
    assert listing(tmp_path / "outside") == {}


def test_training_runs_refuse_linked_folders_too(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "checkpoints").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(DsdError, match="checkpoints is a symbolic link"):
        Trainer(load_digits()[0][:8], TINY, TrainConfig(steps=2, batch=4), tmp_path / "r", torch.device("cpu"))
    assert listing(tmp_path / "outside") == {}


def test_an_atomic_write_replaces_a_link(tmp_path):
    (tmp_path / "outside").mkdir()
    target = outside_file(tmp_path, "target", b"keep")
    (tmp_path / "f").symlink_to(target)
    atomic_write_bytes(tmp_path / "f", b"new")
    assert target.read_bytes() == b"keep" and not (tmp_path / "f").is_symlink()
    assert (tmp_path / "f").read_bytes() == b"new"


def test_the_app_replaces_links_in_place_of_its_process_files(run, tmp_path):
    log, record = outside_file(tmp_path, "log", b"old log"), outside_file(tmp_path, "record", b"{}")
    (run / LOG_FILE).symlink_to(log)
    (run / PID_FILE).symlink_to(record)
    proc = RunProcess.start([sys.executable, "-c", "print('said')"], run)
    assert proc.popen.wait(30) == 0
    assert log.read_bytes() == b"old log" and record.read_bytes() == b"{}"
    assert (run / LOG_FILE).read_text().strip() == "said" and not (run / PID_FILE).is_symlink()
