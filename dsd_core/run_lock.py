"""One process owns a run folder at a time: an OS file lock on `RUN/.lock`, held for the run's life.

Two processes appending to one event log and racing to write one model lose work silently, so a run takes an
exclusive `flock` before it writes anything and keeps it until it ends. The OS drops the lock when the process
dies however it dies (SIGKILL included), so a lock is never stale; the file itself stays, holding the last
holder's pid and command line for the message of the process that is refused. Torch-free: the terminal app
asks `holder()` whether a run is running.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .atomic import open_own_file
from .errors import DsdError

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None

LOCK_FILE = ".lock"
GRACE_S = 0.3  # how long a start waits out a momentary lock (the terminal app's probe) before it gives up
COMMAND_CHARS = 120  # of the holder's command line in a message


@dataclass(frozen=True)
class Holder:
    """The process that holds a run's lock, as its lock file records it (pid None: not recorded yet)."""

    pid: int | None
    command: str


class RunInUse(DsdError):
    """Another process holds the run folder."""

    def __init__(self, root: Path, who: Holder):
        self.holder = who
        pid = f"pid {who.pid}" if who.pid else "pid unknown"
        said = f"{pid}: {who.command}" if who.command else pid
        super().__init__(f"{root} is in use by another dsd process ({said}); wait for it to end or stop it, "
                         "then run this again")


class RunLock:
    """`with RunLock(root):` owns the run folder or raises `RunInUse`; released on every way out."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.path = self.root / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None:
            return self
        try:
            fd = open_own_file(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise DsdError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + GRACE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                who = _read_holder(fd)
                os.close(fd)
                raise RunInUse(self.root, who) from None
            except OSError:
                break  # a file system without locks: run unlocked rather than not at all
        record = json.dumps({"pid": os.getpid(), "argv": sys.argv, "started": round(time.time(), 3)}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        except OSError:
            pass  # the record only words messages; the lock is what counts
        self.fd = fd
        return self

    def release(self) -> None:
        """Closing the file drops the lock; the record stays, and no lock on it says it is stale."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(root: str | Path) -> Holder | None:
    """Who holds RUN's lock, or None if no process does. Never blocks and writes nothing: a shared lock tried
    and dropped at once (a start that meets it waits `GRACE_S`)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(Path(root) / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return None


def refuse_if_in_use(root: str | Path | None) -> None:
    """Fail now, before any work, if another process owns RUN (the run checks again when it takes the lock)."""
    who = holder(root) if root is not None else None
    if who is not None:
        raise RunInUse(Path(root), who)


def _read_holder(fd: int) -> Holder:
    """The record in a lock file; it is untrusted text, so only a positive pid and printable text are kept."""
    try:
        record = json.loads(os.pread(fd, 8192, 0))
        pid = record.get("pid")
        argv = record.get("argv")
    except (OSError, ValueError, AttributeError):
        return Holder(None, "")
    pid = pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None
    text = " ".join(str(a) for a in argv) if isinstance(argv, list) else ""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return Holder(pid, text if len(text) <= COMMAND_CHARS else text[: COMMAND_CHARS - 1] + "…")
