"""Write files so that a reader never sees half of one: write a temporary sibling, fsync, rename.

The rename replaces whatever the target name is, a symbolic link included, so an atomic write never writes
through a link; files that are appended to or cut in place are opened with `open_own_file`, which refuses links.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

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
    with atomic_file(path) as f:
        pause = _pause_seconds(path.name)
        if pause:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(pause)
            data = data[len(data) // 2 :]
        f.write(data)
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """`atomic_write_bytes` for a file written in pieces (an `.npz` of many batches, never all in memory): the
    block writes to the yielded temporary sibling, which is fsynced and renamed into place when the block ends,
    and deleted if it fails."""
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
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DsdError(f"cannot write {path}: {_problem(exc)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Callable[[str, bytes], None]]:
    """A folder of files written whole or not at all: the block calls the yielded `write(name, data)`, which
    writes into a temporary sibling folder; when the block ends the files are fsynced and the folder is renamed
    into place, replacing an existing `path` only then (its old files never mix with the new). If anything fails
    (a full disk, Ctrl-C) the temporary folder is deleted and `path` is as it was."""
    path = Path(path)
    if not path.parent.is_dir():
        raise DsdError(f"output folder does not exist: {path.parent}")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise DsdError(f"cannot write to {path.parent}: {_problem(exc)}") from None

    def write(name: str, data: bytes) -> None:
        fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield write
        _replace_folder(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DsdError(f"cannot write {path}: {_problem(exc)}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_folder(new: Path, path: Path) -> None:
    """Rename the finished folder `new` to `path`. What `path` held (a folder, or a link: the link itself, never
    what it points to) is moved aside first, put back if the rename fails, and deleted only after it worked."""
    aside = None
    if path.exists() or path.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", suffix=".tmp", dir=path.parent))
        os.rename(path, aside / path.name)
    try:
        os.rename(new, path)
    except OSError:
        if aside is not None:
            os.rename(aside / path.name, path)
            shutil.rmtree(aside, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


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
