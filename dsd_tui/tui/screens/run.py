"""A run, live: loss, agreement, step-frequency histogram, stage, speed, NFE, ETA and previews, tailed from the run's
event log, and what its process uses; pause, resume, stop. Whatever the run process does, this screen only
reports it. What the run's files say (its method, labels, warnings, errors, log lines, its folder's name) is
shown as plain text: inserted as `Content.from_markup` variables, never as markup, after `safe_text`."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from dsd_core.events import EventTail
from dsd_core.run_lock import holder
from dsd_core.runs import RunPaths
from dsd_core.text import safe_text

from ..process import RunProcess, error_line, external_pid, log_tail
from ..resources import ProcessMeter
from ..runstate import RunState, format_duration
from ..widgets.histogram import StepFrequencyBars
from ..widgets.loss_plot import LossPlot
from ..widgets.quality_plot import QualityPlot
from ..widgets.tiles import TileGrid

POLL_S = 0.25
LOOKUP_S = 5.0  # how often to look for the process of a run started outside the app
EXIT_INTERRUPTED = 130


class RunScreen(Screen):
    """Watches RUN_DIR; `process` is the run's process when this app started or found it, else None."""

    BINDINGS = [
        Binding("p", "pause", "Pause/resume"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume_run", "Resume"),
        Binding("e", "export", "Export ONNX"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, run_dir: Path, process: RunProcess | None):
        super().__init__()
        self.run_dir, self.process = Path(run_dir), process
        self.paths = RunPaths(run_dir)
        self.state = RunState()
        self.tail = EventTail(self.paths.events_path)
        self.watch_started = time.time()
        self.shown_previews: tuple[Path | None, Path | None] = (None, None)
        self.problem: Content | None = None  # why the run is not running, shown in place
        self.exit_seen = False
        self.meter = ProcessMeter()
        self.outside_pid: int | None = None  # the live process of a run started outside the app, if found
        self.looked_up_at = float("-inf")

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="run-status")
        with Horizontal(id="charts"):
            yield LossPlot(id="loss")
            yield QualityPlot(id="quality")
            yield StepFrequencyBars(id="histogram")
        with Horizontal(id="previews"):
            with Vertical(classes="preview"):
                yield Static("undistilled", id="first-label", classes="preview-label")
                yield TileGrid(id="first")
            with Vertical(classes="preview"):
                yield Static("current model", id="latest-label", classes="preview-label")
                yield TileGrid(id="latest")
        yield Static("", id="run-message")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = safe_text(self.run_dir)
        self.query_one("#histogram").border_title = "updates per step"
        self.poll()
        self.set_interval(POLL_S, self.poll)

    # -- following the run --------------------------------------------------------------------------
    def poll(self) -> None:
        events = self.tail.read_new()
        for event in events:
            self.state.apply(event)
        if events:
            self.show_charts()
            self.show_previews()
        self.check_process()
        self.look_for_outside_process()
        self.show_status()
        self.refresh_bindings()

    def check_process(self) -> None:
        proc = self.process
        if proc is None:
            return
        code = proc.poll()
        if code is None or self.exit_seen:
            return
        self.exit_seen = True
        for event in self.tail.read_new():  # the last events the process wrote before it went
            self.state.apply(event)
        self.show_charts()
        self.show_previews()
        if code == 0 or self.state.ended:
            return
        tail = log_tail(self.run_dir, 1)
        if code == -1 and tail and tail[0].startswith("interrupted"):  # not our child: no exit code, but last words
            code = EXIT_INTERRUPTED
        if code == EXIT_INTERRUPTED:
            if self.checkpointed():
                self.problem = Content(f"stopped at update {self.state.update}; r resumes from the last checkpoint")
            else:
                self.problem = Content(f"stopped at update {self.state.update}, before its first checkpoint")
        else:
            reason = self.state.error or error_line(self.run_dir) or exit_reason(code)
            more = "; r resumes from the last checkpoint" if self.checkpointed() else ""
            if not self.state.error and error_line(self.run_dir) is None:
                more += "\n" + "\n".join(map(safe_text, log_tail(self.run_dir, 3)))
            self.problem = Content.from_markup("[b]run failed:[/b] $reason$more", reason=safe_text(reason), more=more)

    def started_outside(self) -> bool:
        """A run going on (as far as its events tell) with no process handle here: started by the CLI."""
        s = self.state
        return self.process is None and s.events > 0 and not (s.ended or s.error or s.interrupted)

    def look_for_outside_process(self) -> None:
        if not self.started_outside():
            self.outside_pid = None
        elif time.monotonic() - self.looked_up_at >= LOOKUP_S:
            self.looked_up_at = time.monotonic()
            self.outside_pid = external_pid(self.run_dir)

    def run_pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid if self.process.running else None
        return self.outside_pid

    def show_charts(self) -> None:
        self.query_one("#loss", LossPlot).set_losses(self.state.updates, self.state.losses, self.state.stage_starts)
        self.query_one("#quality", QualityPlot).show(self.state)
        histogram = self.query_one("#histogram", StepFrequencyBars)
        histogram.counts = tuple(self.state.histogram)
        if self.state.histogram:
            histogram.border_subtitle = f"{len(self.state.histogram)}-step grid"

    def preview_file(self, logged: Path) -> Path:
        """A preview named by the event log, in this run's samples folder whatever path the log gives: the
        log is untrusted, and a run folder may have moved since it was written."""
        return self.paths.samples / Path(logged).name

    def show_previews(self) -> None:
        first, latest = self.state.first_preview, self.state.latest_preview
        paths = (first.path if first else None, latest.path if latest else None)
        if paths == self.shown_previews:
            return
        if first is not None and paths[0] != self.shown_previews[0]:
            self.query_one("#first", TileGrid).load_grid(self.preview_file(first.path), self.run_dir)
            label = Content(f"{safe_text(first.label)} · {self.state.n_to} steps")
            self.query_one("#first-label", Static).update(label)
        if latest is not None and paths[1] != self.shown_previews[1]:
            self.query_one("#latest", TileGrid).load_grid(self.preview_file(latest.path), self.run_dir)
            self.query_one("#latest-label", Static).update(f"update {latest.update} · same noise")
        self.shown_previews = paths

    def phase(self) -> str:
        s, proc = self.state, self.process
        if s.ended:
            return "[green]finished[/green]"
        if self.problem is not None:
            return "[red]failed[/red]" if "failed" in self.problem.plain else "[yellow]stopped[/yellow]"
        if s.error and (proc is None or not proc.running):
            return "[red]failed[/red]"
        if s.interrupted and proc is None:
            return "[yellow]stopped[/yellow]"
        if proc is not None and proc.stopping:
            return "[yellow]stopping…[/yellow]"
        if proc is not None and proc.paused:
            return "[yellow]paused[/yellow] · p resumes"
        last = s.last_event_time or (self.watch_started if proc else None)
        quiet = time.time() - last if last else 0.0
        if last and quiet > self.app.hang_after:
            return f"[red]no events for {quiet:.0f} s[/red]"
        if proc is None:
            return "watching" if s.events else "[dim]no events yet[/dim]"
        return "[green]running[/green]"

    def show_status(self) -> None:
        s = self.state
        phase = self.phase()
        moving = phase.endswith(("running[/green]", "watching"))
        rate, eta = (s.rate(), s.eta_seconds()) if moving else (None, None)
        if s.ended and s.wall_seconds:
            rate = s.average_rate()
        head = f"[b]$method[/b] $schedule {s.n_from}→{s.n_to}" if s.method else "[b]run[/b]"
        line1 = f"{head} · stage $stage · update {s.update}/{s.total_updates or '?'} · {phase}"
        line2 = (f"{rate:.1f} upd/s" if rate else "– upd/s") + f" · NFE {s.nfe:,}"
        if eta is not None:
            line2 += f" · ETA {format_duration(eta)}"
        if s.ended and s.wall_seconds is not None:
            line2 += f" · took {format_duration(s.wall_seconds)}"
        if s.losses:
            line2 += f" · loss {s.losses[-1]:.4g}"
        if s.quality:
            _, steps, psnr = s.quality[-1]
            line2 += f" · agreement {psnr:.1f} dB at {steps} steps"
        if s.threads:
            line2 += f" · {s.threads} thread{'s' if s.threads != 1 else ''}"
        pid = self.run_pid()
        usage = self.meter.text(pid)
        line3 = f"\n[dim]process {pid}[/dim] · {usage}" if usage else ""
        self.query_one("#run-status", Static).update(Content.from_markup(
            line1 + "\n" + line2 + line3, method=safe_text(s.method.upper()), schedule=safe_text(s.schedule),
            stage=safe_text(s.stage_text())))
        message = self.problem or Content("")
        if not message and s.error:
            message = Content.from_markup("[b]run error:[/b] $error", error=safe_text(s.error))
        if not message:
            message = Content("\n").join(self.notes())
        widget = self.query_one("#run-message", Static)
        widget.update(message)
        widget.set_class("failed" in phase, "-error")

    def notes(self) -> list[Content]:
        """What the message line says of a run that has no problem: its latest early stage end, then the way on
        from a finished run, or its latest warning."""
        s, notes = self.state, []
        if ends := s.stage_end_lines():
            more = f" ({len(ends)} stages ended early)" if len(ends) > 1 else ""
            notes.append(Content(safe_text(ends[-1] + more)))
        if s.ended:
            notes.append(Content.from_markup("[b]e[/b] exports the distilled model to ONNX, then [b]s[/b] opens the "
                                             "sampler"))
        elif s.warnings:
            notes.append(Content.from_markup(f"[yellow]warning:[/yellow] $warning ({len(s.warnings)} in all)",
                                             warning=safe_text(s.warnings[-1])))
        return notes

    def checkpointed(self) -> bool:
        return self.paths.state_path.is_file()

    # -- keys ---------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        live = self.process is not None and self.process.running
        if action == "pause":
            return (live or self.started_outside()) and hasattr(signal, "SIGSTOP")  # POSIX only
        if action == "stop":
            return live or self.started_outside()  # outside: the key says why it cannot
        if action == "resume_run":
            return not live and self.outside_pid is None and not self.state.ended and self.checkpointed()
        if action == "export":
            return self.state.ended
        return True

    def action_pause(self) -> None:
        if self.process is None:
            self.notify(outside_advice("pause", external_pid(self.run_dir)), severity="warning", timeout=10)
            return
        if self.process.paused:
            self.process.resume()
        else:
            self.process.pause()
        self.show_status()

    def action_stop(self) -> None:
        if self.process is None:
            self.notify(outside_advice("stop", external_pid(self.run_dir)), severity="warning", timeout=10)
            return
        self.process.stop()
        self.show_status()

    def action_resume_run(self) -> None:
        if (who := holder(self.run_dir)) is not None:  # a process writes it (its events may not say so yet)
            self.notify(f"cannot resume this run: process {who.pid or '(pid unknown)'} is writing it",
                        severity="warning", timeout=10)
            return
        self.problem, self.exit_seen = None, False
        self.state.error = None
        self.process = self.app.launch_resume(self.run_dir)

    def action_export(self) -> None:
        if self.state.model is not None:
            self.app.open_export(self.run_dir, self.state.model, self.state.n_to)


def outside_advice(what: str, pid: int | None) -> str:
    """Why `p`/`s` cannot act on a run this app did not start (it has no process handle), and what can."""
    if pid is None:
        return (f"cannot {what} this run from here: it was started outside the app and no process writing it was "
                "found on this machine (another machine, or gone?)")
    how = (f"pause it with kill -STOP {pid}, resume with kill -CONT {pid}" if what == "pause" else
           f"stop it with Ctrl-C in its terminal or kill -INT {pid} (it checkpoints first)")
    return f"this run was started outside the app (pid {pid}): {how}"


def exit_reason(code: int) -> str:
    """Why a run process went, from its exit code alone (-1: not our child, so unknown)."""
    if code == -1:
        return "the run process is gone without an error line (killed from outside?)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the run process was killed by {name}"
    return f"the run process exited with code {code}"
