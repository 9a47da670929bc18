"""Write files so that a reader never sees half of one: write a temporary sibling, fsync, rename.

The rename replaces whatever the target name is, a symbolic link included, so an atomic write never writes
through a link; files that are appended to or cut in place are opened with `open_own_file`, which refuses links.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import time
from pathlib import Path

from .errors import DsdError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone makes files private (0600)
# Tests only: "NAME:SECONDS" pauses halfway through writing files called NAME, so a kill can land mid-write.
PAUSE_ENV = "DSD_TEST_PAUSE_WRITE"
HINTS = {errno.ENOSPC: "free some disk space and run it again", errno.EDQUOT: "free some disk space and run it again",
         errno.EACCES: "check the folder's permissions", errno.EROFS: "write to another folder"}


def _problem(exc: OSError) -> str:
    """`strerror; what to do`, for a one-line error."""
    hint = HINTS.get(exc.errno)
    return f"{exc.strerror or exc}" + (f"; {hint}" if hint else "")


def _pause_seconds(name: str) -> float:
    target, _, seconds = os.environ.get(PAUSE_ENV, "").partition(":")
    return float(seconds) if target == name and seconds else 0.0


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace `path` with `data` in one rename; on any failure the old file (if any) is untouched."""
    path = Path(path)
    if not path.parent.is_dir():
        raise DsdError(f"output folder does not exist: {path.parent}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DsdError(f"cannot write to {path.parent}: {_problem(exc)}") from None
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            pause = _pause_seconds(path.name)
            if pause:
                f.write(data[: len(data) // 2])
                f.flush()
                time.sleep(pause)
                data = data[len(data) // 2 :]
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DsdError(f"cannot write {path}: {_problem(exc)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def open_own_file(path: str | Path, flags: int) -> int:
    """A file descriptor of `path` opened without following a symbolic link (O_NOFOLLOW; O_NONBLOCK so that a
    FIFO cannot hang the open), refused unless it is a regular file with no other hard link: a file that a run
    writes in place must be its own, or the write would land outside the run folder."""
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, FILE_MODE)
    except OSError:
        if path.is_symlink():
            raise DsdError(f"{path} is a symbolic link; dsd never writes through a link in a run folder: remove "
                           "the link") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        why = "is not a regular file" if not stat.S_ISREG(info.st_mode) else "has other hard links"
        raise DsdError(f"{path} {why}; dsd writes only a run folder's own files: remove it")
    os.set_blocking(fd, True)
    return fd


def stale_temp_files(folder: str | Path) -> list[Path]:
    """Temporary siblings that a killed writer left behind (never a finished file: those were renamed)."""
    folder = Path(folder)
    return sorted(p for p in folder.glob(".*.tmp") if p.is_file()) if folder.is_dir() else []
