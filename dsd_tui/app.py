"""`dsd-tui`: set up a distillation, watch it live, export it to ONNX and sample it.

The app is the screens in dsd_tui/tui/screens plus this small shell: it owns the things every screen
shares (the engine's catalog, the runs folder, the run processes it started) and the moves between screens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from dsd_core import __version__
from dsd_core.runs import RunPaths
from dsd_core.threads import onnx_threads

from .tui.catalog import FALLBACK, Catalog
from .tui.process import RunProcess
from .tui.screens.dialogs import HelpScreen, QuitScreen
from .tui.screens.export import ExportScreen
from .tui.screens.run import RunScreen
from .tui.screens.sampler import SamplerScreen
from .tui.screens.setup import SetupScreen
from .tui.setup_form import DistillRequest, resume_argv


class DsdApp(App):
    """The dsd terminal app; `attach` opens a run folder straight away."""

    TITLE = "dsd"
    SUB_TITLE = f"direct self-distillation · v{__version__}"
    CSS_PATH = "tui/app.tcss"
    ENABLE_COMMAND_PALETTE = False  # its slot in the footer is worth more to the screens' own keys
    BINDINGS = [
        Binding("q", "quit_app", "Quit"),
        Binding("ctrl+q", "quit_app", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("f1", "help", "Help", show=False),
    ]

    def __init__(self, attach: Path | None = None, runs_root: Path = Path("runs"), catalog: Catalog | None = None,
                 threads: int | None = None, hang_after: float = 60.0):
        super().__init__()
        self.attach, self.runs_root = attach, Path(runs_root)
        self.catalog = catalog or FALLBACK
        # new runs: one thread unless told (a run spins its cores; a second job beside it would collapse it);
        # the sampler: every usable core unless told (dsd_core.threads.onnx_threads)
        self.threads, self.hang_after = threads or 1, hang_after
        self.sample_threads = threads or onnx_threads()
        self.processes: list[RunProcess] = []

    def on_mount(self) -> None:
        self.push_screen(SetupScreen())
        if self.attach is not None:
            self.open_run(self.attach)

    # -- moving between screens ---------------------------------------------------------------------
    def start_run(self, request: DistillRequest) -> None:
        run_dir = request.default_run_dir(self.runs_root)
        n = 1
        while run_dir.exists():  # two starts in one second
            n += 1
            run_dir = run_dir.with_name(f"{run_dir.name.rsplit('~', 1)[0]}~{n}")
        self.push_screen(RunScreen(run_dir, self.track(RunProcess.start(request.argv(run_dir), run_dir))))

    def launch_resume(self, run_dir: Path) -> RunProcess:
        return self.track(RunProcess.start(resume_argv(run_dir), run_dir))

    def resume_run(self, run_dir: Path) -> None:
        self.push_screen(RunScreen(run_dir, self.launch_resume(run_dir)))

    def open_run(self, run_dir: Path) -> None:
        process = RunProcess.find(run_dir)
        self.push_screen(RunScreen(run_dir, self.track(process) if process else None))

    def open_export(self, run_dir: Path, model: Path, steps: int) -> None:
        self.push_screen(ExportScreen(run_dir, model, steps))

    def open_sampler(self, models: dict[int, Path], save_dir: Path) -> None:
        self.push_screen(SamplerScreen(models, save_dir))

    def track(self, process: RunProcess) -> RunProcess:
        self.processes.append(process)
        return process

    # -- app-wide keys ------------------------------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_quit_app(self) -> None:
        running = [p for p in self.processes if p.running]
        if not running:
            self.exit()
            return
        if isinstance(self.screen, QuitScreen):
            return

        def answer(choice: str | None) -> None:
            if choice == "stop":
                for process in running:
                    process.stop()
            if choice in ("stop", "leave"):
                self.exit()

        self.push_screen(QuitScreen([p.run_dir for p in running]), answer)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dsd-tui", description="The dsd terminal app.")
    parser.add_argument("--attach", type=Path, metavar="RUN_DIR", help="watch this run folder (running or not)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where new runs go (default: ./runs)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for new runs and sampling (default: 1 for runs, every usable physical "
                             "core for sampling; a resumed run keeps its own)")
    parser.add_argument("--hang-after", type=float, default=60.0, metavar="S",
                        help="warn when a running run has written no event for S seconds (default 60)")
    args = parser.parse_args(argv)
    attach = RunPaths(args.attach) if args.attach is not None else None
    if attach is not None and not attach.config_path.is_file() and not attach.events_path.is_file():
        parser.exit(2, f"error: {args.attach} is not a run folder (no config.json or events.jsonl)\n")
    if args.threads is not None and args.threads < 1:
        parser.exit(2, f"error: --threads must be at least 1, got {args.threads}\n")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    DsdApp(attach=args.attach, runs_root=args.runs, threads=args.threads, hang_after=args.hang_after).run()
