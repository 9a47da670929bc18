"""Ctrl-C (SIGINT) and SIGTERM during a long run: finish the update in flight, checkpoint, then stop, so that
nothing done is lost and the run resumes where it stopped. A second signal stops at once (the last checkpoint
still holds). SIGTERM is what `kill`, systemd, docker and batch schedulers send first, so it must be as safe as
Ctrl-C.

Outside a run, SIGTERM during a file write (`terminated_as_interrupt`, used by dsd_core.atomic) unwinds like
Ctrl-C, so that the temporary file of the write is deleted and the CLI says one line, instead of the process
dying with the file left behind."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

_requested = False
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Stopped on request after a checkpoint; the message says how to resume."""


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a run: unwinds (deleting temporary files) and exits like Ctrl-C, with one line."""


def stop_requested() -> bool:
    return _requested


def _main_thread() -> bool:
    """Signal handlers can be set only in the main thread."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_at_update_boundary(enabled: bool = True) -> Iterator[None]:
    """While inside, the first SIGINT or SIGTERM only raises the flag that `stop_requested()` reads; a second one
    stops at once (main thread only; off for data-parallel runs, whose ranks must stop together)."""
    global _requested
    if not enabled or not _main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        global _requested
        if _requested:
            raise KeyboardInterrupt
        _requested = True

    _requested = False
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _requested = False


@contextlib.contextmanager
def terminated_as_interrupt(what: str) -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` ("stopped by SIGTERM; `what`"), so that cleanup code runs and the
    CLI prints one line and exits 130 as after Ctrl-C. Only where nobody else handles SIGTERM (a run's own
    handler checkpoints first) and only in the main thread; further SIGTERMs are ignored while unwinding, so
    that the cleanup itself is not cut short."""
    if not _main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated(f"stopped by SIGTERM; {what}")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
