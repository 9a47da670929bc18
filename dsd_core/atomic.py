"""Write files so that a reader never sees half of one: write a temporary sibling, fsync, rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import DsdError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone makes files private (0600)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace `path` with `data` in one rename; on any failure the old file (if any) is untouched."""
    path = Path(path)
    if not path.parent.is_dir():
        raise DsdError(f"output folder does not exist: {path.parent}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DsdError(f"cannot write to {path.parent}: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DsdError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
