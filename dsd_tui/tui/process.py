"""A `dsd` run in a child process of its own session, so it outlives the app when the user leaves it running.

Pause and resume are SIGSTOP and SIGCONT (POSIX only); stop is SIGINT, which the CLI turns into a clean exit (exit
code 130), then SIGTERM (which checkpoints too) and finally SIGKILL if it does not go. The run checkpoints
periodically, so a stopped run can be resumed with `dsd distill --resume RUN_DIR`. `RUN_DIR/tui-process.json`
records the pid, so an app attached later can still pause or stop it; the child's output goes to
`RUN_DIR/tui-process.log`, whose last `error: …` line is what the app shows when the run dies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dsd_core.atomic import atomic_write_bytes, open_own_file
from dsd_core.errors import DsdError
from dsd_core.run_lock import holder

PID_FILE = "tui-process.json"
LOG_FILE = "tui-process.log"
STOP_GRACE_S = 5.0


def dsd_argv(*args: str) -> list[str]:
    """The `dsd` command line, run by this interpreter (so the app's environment is the run's)."""
    return [sys.executable, "-c", "from dsd_tui.cli import main; main()", *args]


class RunProcess:
    """A started or found run process: poll it, pause, resume or stop it, read its output."""

    def __init__(self, pid: int, run_dir: Path, popen: subprocess.Popen | None = None):
        self.pid, self.run_dir, self.popen = pid, Path(run_dir), popen
        self.paused = False
        self._stop_sent: float | None = None
        self._escalations: list[int] = []  # what stop sends next when the run has not gone after a grace
        self._exit_code: int | None = None

    @classmethod
    def start(cls, argv: list[str], run_dir: str | Path) -> RunProcess:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        with os.fdopen(_own_log(run_dir / LOG_FILE), "ab") as log:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env={**os.environ, "NO_COLOR": "1"})
        record = json.dumps({"pid": popen.pid, "argv": argv, "started": time.time()})
        atomic_write_bytes(run_dir / PID_FILE, record.encode())  # replaces a link, never writes through it
        return cls(popen.pid, run_dir, popen)

    @classmethod
    def find(cls, run_dir: str | Path) -> RunProcess | None:
        """The live process an app started for this run earlier, if it is still running."""
        run_dir = Path(run_dir)
        try:
            record = json.loads((run_dir / PID_FILE).read_text())
            pid, argv = int(record["pid"]), list(record["argv"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        proc = cls(pid, run_dir)
        if not proc._alive():
            return None
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] != [a.encode() for a in argv]:
                return None  # the pid was reused by another program
        except OSError:
            pass  # no /proc (macOS): trust the pid
        proc.paused = _stopped(pid)
        return proc

    # -- state --------------------------------------------------------------------------------------
    def poll(self) -> int | None:
        """None while running; then the exit code (-1 when the process was not ours to wait for)."""
        if self._exit_code is not None:
            return self._exit_code
        if self.popen is not None:
            self._exit_code = self.popen.poll()
        elif not self._alive():
            self._exit_code = -1
        if (self._exit_code is None and self._stop_sent and self._escalations
                and time.monotonic() - self._stop_sent > STOP_GRACE_S):
            self._stop_sent = time.monotonic()  # first: _signal polls again, which must not escalate again
            self._signal(self._escalations.pop(0))
        return self._exit_code

    @property
    def running(self) -> bool:
        return self.poll() is None

    @property
    def stopping(self) -> bool:
        return self._stop_sent is not None and self.running

    def _alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not _zombie(self.pid)

    # -- control ------------------------------------------------------------------------------------
    def _signal(self, sig: int) -> bool:
        if self.poll() is not None:
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def pause(self) -> bool:
        if self._signal(signal.SIGSTOP):
            self.paused = True
        return self.paused

    def resume(self) -> bool:
        if self._signal(signal.SIGCONT):
            self.paused = False
        return not self.paused

    def stop(self) -> None:
        if self._signal(signal.SIGINT):
            # SIGTERM checkpoints like SIGINT; a run stuck in a long native call gets SIGKILL a grace later
            self._escalations = [signal.SIGTERM, signal.SIGKILL]
            self._stop_sent = time.monotonic()
            self.resume()  # a stopped process cannot handle SIGINT until it runs again

    # -- output -------------------------------------------------------------------------------------
    def log_tail(self, lines: int = 20) -> list[str]:
        return log_tail(self.run_dir, lines)

    def error_line(self) -> str | None:
        return error_line(self.run_dir)


def _own_log(path: Path) -> int:
    """The run's log, opened to append but never through a link: a link (symbolic or hard) in its place is
    removed (the link, not what it points to) and a file of the run's own made."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        return open_own_file(path, flags)
    except DsdError:
        path.unlink()
        return open_own_file(path, flags)


def log_tail(run_dir: Path, lines: int = 20) -> list[str]:
    try:
        text = (Path(run_dir) / LOG_FILE).read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def error_line(run_dir: Path) -> str | None:
    """The CLI's last `error: …` line, else the last line of a Python traceback, else None."""
    tail = log_tail(run_dir, 40)
    for line in reversed(tail):
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    if any(line.startswith("Traceback") for line in tail):
        return tail[-1].strip()
    return None


def lock_holder(run_dir: Path) -> int | None:
    """The pid of the process that holds the run folder's lock (`dsd_core.run_lock`): a run writing it, however
    it was started; None when no process holds it (a crashed one holds nothing)."""
    who = holder(run_dir)
    return None if who is None else who.pid


def external_pid(run_dir: Path) -> int | None:
    """The pid of a `dsd distill` writing RUN_DIR that no dsd-tui started: the lock's holder, else (a run that
    has not taken the lock yet, or of an older dsd) found by its command line: `--run-dir RUN_DIR` or
    `--resume RUN_DIR`. Linux only."""
    if (pid := lock_holder(run_dir)) is not None:
        return pid
    target = Path(run_dir).resolve()
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            if pid == os.getpid() or "distill" not in argv:
                continue
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        for i, arg in enumerate(argv):
            flag, _, value = arg.partition("=")
            if flag in ("--run-dir", "--resume"):
                value = value or (argv[i + 1] if i + 1 < len(argv) else "")
                if value and (cwd / value).resolve() == target:
                    return pid
    return None


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]


def _zombie(pid: int) -> bool:
    return _proc_state(pid) == "Z"


def _stopped(pid: int) -> bool:
    return _proc_state(pid) == "T"
