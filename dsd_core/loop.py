"""The one resumable loop that training and distillation share.

Both run the same skeleton: resume from the run folder's state (or write the config), then per update the
work itself, its events, a preview grid and a checkpoint at their intervals, a Ctrl-C stop that checkpoints
first, and a final save, all while holding the run folder's lock (`run_lock.py`: one writer per folder). Keeping
that skeleton in one place keeps the two commands' run folders, events and
resume rules the same; a subclass fills in only what its update does and what its events carry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ContextManager

import torch

from . import __version__
from .errors import DsdError, OptionError
from .interrupt import Interrupted, stop_requested
from .run_lock import RunLock
from .runs import STATE_FILE, RunDir

MODEL_FILE = "model.safetensors"
PREVIEW = "sampling a preview grid"
Phase = Callable[[str], ContextManager]


class ResumableLoop:
    """Subclasses set `command` and `unit` (the event field that counts updates) and implement the hooks."""

    command = ""  # the CLI command that resumes the run
    unit = ""  # "step" or "update": how events and messages count progress
    final_phase = ""  # what the final save is called for a front end
    nothing_to_resume_tail = ")"  # ends the "(no state file" of a failed resume (an `OptionError` template)
    run: RunDir
    sample_every: int
    checkpoint_every: int

    # -- hooks --------------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Updates done so far."""
        raise NotImplementedError

    @property
    def total(self) -> int:
        """Updates the run does in all."""
        raise NotImplementedError

    def config_dict(self) -> dict:
        raise NotImplementedError

    def config_header(self) -> dict:
        """The first keys of every run's config: what made it, and the thread count a resume needs to end
        bit-identical."""
        return {"command": self.command, "version": __version__, "threads": torch.get_num_threads()}

    def load_state(self) -> bool:
        raise NotImplementedError

    def save_state(self) -> Path:
        raise NotImplementedError

    def preview(self) -> Path:
        raise NotImplementedError

    def save_final(self) -> Path:
        raise NotImplementedError

    def start_fresh(self, phase: Phase) -> None:
        """A new run: record its config."""
        self.run.write_config(self.config_dict())
        self.run.event("config", **self.config_dict())

    def begin(self) -> None:
        """Just before the first update of this process."""

    def advance(self, phase: Phase) -> Any:
        """One update, counted in `position`; returns what `on_progress` receives."""
        raise NotImplementedError

    def log_update(self, result: Any) -> None:
        """Events of the update just done, written before `on_progress` sees it."""

    def after_update(self, result: Any, phase: Phase) -> None:
        """Periodic events other than previews and checkpoints, after `on_progress`."""

    def end_fields(self) -> dict:
        return {}

    # -- the loop -----------------------------------------------------------------------------------
    def at(self, n: int | None = None) -> dict:
        """The event field that says where in the run something happened, e.g. {"step": 20}."""
        return {self.unit: self.position if n is None else n}

    def due(self, every: int) -> bool:
        return self.position % every == 0 or self.position == self.total

    def writes_run(self) -> bool:
        """Whether this process writes the run folder: the only process, or rank 0 of a data-parallel run."""
        world = getattr(self, "world", None)
        return world is None or world.main

    @contextlib.contextmanager
    def owning(self, resume: bool):
        """The run folder's lock for the run's life (rank 0 only; released however the run ends), then the
        checks and repairs that only the folder's one writer may make."""
        if not self.writes_run():
            yield
            return
        self.run.create()  # only now: a run whose settings fail their checks leaves no folder behind
        with RunLock(self.run.root):
            if resume:
                self.run.repair()  # what a kill left: a torn event line, temp files
            elif self.run.config_path.exists():  # checked again under the lock: two starts on one folder
                raise DsdError(f"{self.run.root} already holds a run; resume it or start in another folder")
            yield

    def resume_prelude(self, resume: bool, phase: Phase) -> None:
        if resume and not self.load_state():
            raise OptionError("nothing to resume in {root} (no {state}" + self.nothing_to_resume_tail,
                              root=self.run.root, state=STATE_FILE)
        if resume and self.position >= self.total and (self.run.root / MODEL_FILE).exists():
            raise DsdError(f"the run in {self.run.root} already finished; its model is {self.run.root / MODEL_FILE}")
        if resume:
            self.run.event("resume", **self.at())
        else:
            self.start_fresh(phase)

    def run_loop(self, on_progress: Callable[[int, Any], None] | None = None, resume: bool = False,
                 phase: Phase = contextlib.nullcontext) -> Path:
        """Run to the end. `phase(name)` wraps the steps between updates that take a while (preview grids,
        checkpoints, the final save, a method's stage start), for a front end to name them."""
        with self.owning(resume):
            self.resume_prelude(resume, phase)
            self.begin()
            while self.position < self.total:
                result = self.advance(phase)
                self.log_update(result)
                if on_progress is not None:
                    on_progress(self.position, result)
                self.after_update(result, phase)
                if self.due(self.sample_every):
                    self.run.check_links()  # a folder swapped for a link mid-run
                    with phase(PREVIEW):
                        path = self.preview()
                    self.run.event("samples", **self.at(), path=str(path))
                self.checkpoint_or_stop(phase)
            self.run.check_links()
            with phase(self.final_phase):
                path = self.save_final()
            self.run.event("end", **self.at(), model=str(path), **self.end_fields())
            return path

    def checkpoint_or_stop(self, phase: Phase) -> None:
        """A checkpoint at its interval, at the end, or on Ctrl-C, which then stops the run."""
        stop = stop_requested() and self.position < self.total
        if self.due(self.checkpoint_every) or stop:
            self.run.check_links()
            with phase("saving a checkpoint"):
                path = self.save_state()
            self.run.event("checkpoint", **self.at(), path=str(path))
        if stop:
            self.run.event("interrupted", **self.at())
            raise Interrupted(f"checkpoint at {self.unit} {self.position} saved; resume with: dsd {self.command} "
                              f"--resume {self.run.root}")
