"""Where `dsd sample --backend ort` keeps its exports: one file per (checkpoint contents, steps, spacing,
clipping, sampler, dsd version), so a changed checkpoint or a new dsd never reuses a stale graph."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dsd_core import __version__
from dsd_core.errors import DsdError


def cache_dir() -> Path:
    """$DSD_CACHE_DIR, else $XDG_CACHE_HOME/dsd, else ~/.cache/dsd; ONNX files go in its `onnx/` folder."""
    root = os.environ.get("DSD_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsd"
    return Path(root) / "onnx"


def cached_export_path(source_sha256: str, steps: int, spacing: str, clip_x0: bool, sampler: str = "ddim") -> Path:
    """DDIM exports keep the key they had before there were other samplers."""
    key = json.dumps([source_sha256, steps, spacing, clip_x0, __version__] + ([] if sampler == "ddim" else [sampler]))
    tail = "" if sampler == "ddim" else f"-{sampler}"
    return cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}-{steps}steps{tail}.onnx"


def cached_export(model: str, steps: int | None, spacing: str, clip_x0: bool, on_export=None,
                  sampler: str = "ddim") -> tuple[Path, int]:
    """The cached sampler export of a checkpoint (made and validated on first use) and its step count."""
    from dsd_core.builtins import resolve_model_path
    from dsd_core.checkpoint import file_sha256, load_model

    from .onnx_export import export_onnx

    loaded = load_model(model)  # a missing or broken checkpoint becomes a one-line error here
    sha = file_sha256(resolve_model_path(model))
    steps = steps if steps is not None else (loaded.distilled_steps or 64)
    path = cached_export_path(sha, steps, spacing, clip_x0, sampler)
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DsdError(f"cannot create the export cache {path.parent}: {exc.strerror or exc}") from None
        if on_export is not None:
            on_export(path)
        export_onnx(loaded, path, steps, source_sha256=sha, spacing=spacing, clip_x0=clip_x0, sampler=sampler)
    return path, steps
