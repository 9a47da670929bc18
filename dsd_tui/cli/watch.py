"""`dsd sample --watch`, a small desktop sampler: every key press draws the next seed's images into the same
OUT (written atomically, so an image viewer that reloads on change shows each new grid); q quits."""

from __future__ import annotations

import sys
from typing import Callable

import typer

from .common import err_console


def read_key() -> str:
    """One key from a terminal; one line from a pipe (Enter = next). "" at the end of input."""
    if sys.stdin.isatty():
        try:
            return typer.getchar()  # typer's own click: plain click may not be installed
        except EOFError:  # Ctrl-D
            return ""
    line = sys.stdin.readline()
    return line[:1] if line else ""


def watch(redraw: Callable[[int], None], seed: int, read: Callable[[], str] = read_key) -> int:
    """Call `redraw(seed + 1)`, `redraw(seed + 2)`, … once per key until q or the end of input; returns
    the last seed drawn."""
    while True:
        err_console.print(f"seed {seed} — any key: new images (seed {seed + 1}), q: quit", highlight=False)
        if read().lower() in ("q", ""):
            return seed
        seed += 1
        redraw(seed)
