"""Where `dsd sample --backend ort` keeps its exports: one file per (checkpoint contents, steps, spacing,
clipping, sampler, dsd version), so a changed checkpoint or a new dsd never reuses a stale graph.

A file's name is no proof of what it holds: before a cached file is used, its own metadata must name the
checkpoint's hash and the settings asked for. One that does not (swapped, truncated, from another model) is
exported again over it, and said so, rather than run and labelled as the model."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dsd_core import __version__
from dsd_core.errors import DsdError

from . import metadata as md


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
                  sampler: str = "ddim", broken: str | None = None) -> tuple[Path, int]:
    """The cached sampler export of a checkpoint (made and validated on first use, and again whenever the cached
    file is not this export: `cache_mismatch`, or is `broken`: why onnxruntime could not open it) and its step
    count. `on_export(path, why)` is told before an export (`why`: None for a first one, else what was wrong
    with the cached file)."""
    from dsd_core.builtins import resolve_model_path
    from dsd_core.checkpoint import file_sha256, load_model

    from .onnx_export import export_onnx

    loaded = load_model(model)  # a missing or broken checkpoint becomes a one-line error here
    sha = file_sha256(resolve_model_path(model))
    steps = steps if steps is not None else (loaded.distilled_steps or 64)
    path = cached_export_path(sha, steps, spacing, clip_x0, sampler)
    why = broken or (cache_mismatch(path, sha, steps, spacing, clip_x0, sampler) if path.exists() else None)
    if why is not None or not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DsdError(f"cannot create the export cache {path.parent}: {exc.strerror or exc}") from None
        if on_export is not None:
            on_export(path, why)
        export_onnx(loaded, path, steps, source_sha256=sha, spacing=spacing, clip_x0=clip_x0, sampler=sampler)
    return path, steps


def cache_mismatch(path: Path, sha: str, steps: int, spacing: str, clip_x0: bool, sampler: str) -> str | None:
    """Why the cached file at `path` is not the sampler export of the checkpoint with hash `sha` at these
    settings (unreadable, another model, other settings), or None if it is."""
    import onnx

    if not path.is_file():
        return "it is not a file"
    try:
        proto = onnx.load(str(path), load_external_data=False)
        meta = md.read_meta({p.key: p.value for p in proto.metadata_props}, str(path))
    except DsdError as exc:
        return str(exc).removeprefix(f"{path} ").removeprefix(f"{path}: ")
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and onnx's own errors for torn files
        return "it is not a readable ONNX file (truncated?)"
    if meta.get("source_sha256") != sha:
        return "it is the export of another checkpoint (its hash differs)"
    baked = (meta.get("kind"), meta.get("steps"), meta.get("spacing"), meta.get("clip_x0"),
             meta.get("sampler") or "ddim", meta.get("package_version"))
    if baked != ("sampler", steps, spacing, clip_x0, sampler, __version__):
        return "it was exported with other settings"
    return None
