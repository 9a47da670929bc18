"""Ctrl-C (SIGINT) during a long run: finish the update in flight, checkpoint, then stop, so that nothing done
is lost and the run resumes where it stopped. A second Ctrl-C stops at once (the last checkpoint still holds)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

_requested = False


class Interrupted(KeyboardInterrupt):
    """Stopped on request after a checkpoint; the message says how to resume."""


def stop_requested() -> bool:
    return _requested


@contextlib.contextmanager
def stop_at_update_boundary(enabled: bool = True) -> Iterator[None]:
    """While inside, the first SIGINT only raises the flag that `stop_requested()` reads (main thread only:
    signal handlers cannot be set elsewhere; off for data-parallel runs, whose ranks must stop together)."""
    global _requested
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        global _requested
        if _requested:
            raise KeyboardInterrupt
        _requested = True

    _requested = False
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False
