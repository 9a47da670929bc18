"""Write files so that a reader never sees half of one: write a temporary sibling, fsync, rename.

The rename replaces whatever the target name is, a symbolic link included, so an atomic write never writes
through a link; files that are appended to or cut in place are opened with `open_own_file`, which refuses links.

A temporary sibling is named `.NAME.PID.XXXXXXXX.tmp` (a folder's old copy `.NAME.PID.XXXXXXXX.old.tmp`): SIGTERM
deletes it on the way out (dsd_core.interrupt), and the next write of NAME deletes those a killed writer left
(SIGKILL, a crash): only names of that exact pattern, and only when process PID is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .errors import DsdError
from .interrupt import stop_requested, terminated_as_interrupt


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


def _pause(seconds: float) -> None:
    """The test hook's sleep; a stop request (SIGINT/SIGTERM in a run) ends it: a real write is done by then."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop_requested():
        time.sleep(0.05)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace `path` with `data` in one rename; on any failure the old file (if any) is untouched."""
    path = Path(path)
    with _atomic_file(path) as f:
        pause = _pause_seconds(path.name)
        if pause:
            f.write(data[: len(data) // 2])
            f.flush()
            _pause(pause)
            data = data[len(data) // 2 :]
        f.write(data)
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """`atomic_write_bytes` for a file written in pieces (an `.npz` of many batches, never all in memory): the
    block writes to the yielded temporary sibling, which is fsynced and renamed into place when the block ends,
    and deleted if it fails or SIGTERM comes."""
    path = Path(path)
    with _atomic_file(path) as f:
        yield f
        if _pause_seconds(path.name):
            f.flush()
            _pause(_pause_seconds(path.name))


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    _check_folder(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DsdError(f"cannot write to {path.parent}: {_problem(exc)}") from None
    try:
        with terminated_as_interrupt(f"{path} is as it was"):
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
    (a full disk, Ctrl-C, SIGTERM) the temporary folder is deleted and `path` is as it was."""
    path = Path(path)
    _check_folder(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise DsdError(f"cannot write to {path.parent}: {_problem(exc)}") from None

    def write(name: str, data: bytes) -> None:
        fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    try:
        with terminated_as_interrupt(f"{path} is as it was"):
            os.chmod(tmp, 0o777 & ~_umask())
            yield write
            _pause(_pause_seconds(path.name))
            _replace_folder(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DsdError(f"cannot write {path}: {_problem(exc)}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_folder(path: Path) -> None:
    """Before a write of `path`: its folder exists, is not a linked folder of a run, and holds no temp file of
    `path` that a killed writer left."""
    if not path.parent.is_dir():
        raise DsdError(f"output folder does not exist: {path.parent}")
    refuse_linked_run_folder(path)
    sweep_stale_temp_files(path)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _writer_gone(pid: int) -> bool:
    """True only if no process `pid` exists: a live one (of any user, a reused pid included) keeps its files."""
    if pid <= 0:  # 0 and negative pids would name process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):
        return False
    return False


def sweep_stale_temp_files(path: str | Path) -> list[Path]:
    """Delete what killed writers of `path` left beside it (SIGKILL, a crash, a power cut); return what went.
    Only names that are exactly `path`'s temporary names (`.NAME.PID.XXXXXXXX.tmp`, `….old.tmp`) of a gone PID,
    only regular files and real folders (a link is neither followed nor deleted); nothing else is touched."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.([0-9]{{1,10}})\.[a-z0-9_]{{8}}(?:\.old)?\.tmp")
    swept = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return swept
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or not _writer_gone(int(match[1])):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            elif entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
            else:
                continue
        except OSError:
            continue  # best effort: another process swept it first, or we may not delete it
        swept.append(Path(entry.path))
    return swept


def refuse_linked_run_folder(path: str | Path) -> None:
    """Refuse `RUN/SUB/NAME` where SUB is a symbolic link (RunDir.check_links's rule, for every writer: an
    export into `RUN/onnx/`, samples into `RUN/samples/`): the file would land outside the run folder."""
    from .runs import RunPaths  # runs imports this module

    folder = Path(path).parent
    if folder.is_symlink() and os.path.lexists(RunPaths(folder.parent).events_path):
        raise DsdError(f"{folder} is a symbolic link; dsd writes only inside the run folder: replace the link with "
                       "a folder")


def _replace_folder(new: Path, path: Path) -> None:
    """Rename the finished folder `new` to `path`. What `path` held (a folder, or a link: the link itself, never
    what it points to) is moved aside first, put back if the rename fails or is interrupted (Ctrl-C, SIGTERM),
    and deleted only after it worked."""
    aside = None
    try:
        if path.exists() or path.is_symlink():
            aside = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old.tmp", dir=path.parent))
            os.rename(path, aside / path.name)
        os.rename(new, path)
    except BaseException:
        if aside is not None and new.exists() and os.path.lexists(aside / path.name):
            os.rename(aside / path.name, path)
        if aside is not None:
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
