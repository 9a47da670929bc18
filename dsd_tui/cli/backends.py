"""The two ways `dsd sample` draws images: torch (a checkpoint) and onnxruntime (an exported sampler, or
`--backend ort`, which exports the checkpoint to a cache first). Both give uint8 images from the same noise,
one checked batch at a time (`Drawer.batches`), so that writing many images holds one batch in memory.

Torch is imported only inside `torch_drawer` and the export step, so an `.onnx` model samples in an
environment without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from rich.text import Text

from dsd_core.classes import class_ids, class_names_of
from dsd_core.errors import DsdError
from dsd_core.images import to_uint8
from dsd_core.solvers_plan import distilled_note
from dsd_core.text import safe_text

from .common import compute_label, err_console, say, setup_device

Batches = Callable[[int, int, int], Iterator[np.ndarray]]  # (num, seed, batch) → uint8 (n, H, W, C) batches


@dataclass
class Drawer:
    """A ready sampler: what it is (for messages), the (C, H, W) of its images and `batches(num, seed, batch)`,
    the images in checked uint8 batches."""

    model: str
    steps: int
    where: str
    batches: Batches
    sampler: str = "ddim"
    shape: tuple[int, int, int] = (1, 8, 8)


def require_torch(why: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise DsdError(f"{why} needs torch (pip install torch==2.13.0); without torch, dsd sample takes an "
                       "exported .onnx model (dsd export --onnx)") from None


def torch_drawer(model: str | None, steps: int | None, spacing: str, clip: bool, device: str | None,
                 threads: int | None, class_spec: str | None = None, guidance: float | None = None,
                 sampler: str = "ddim") -> Drawer:
    require_torch("sampling a checkpoint")
    from dsd_core.builtins import default_model
    from dsd_core.checkpoint import load_model
    from dsd_core.guidance import resolve
    from dsd_core.sampling import sample_batches

    dev = setup_device(device, threads)
    named = model or f"{default_model(steps)} (the default)"
    model = model or default_model(steps)
    loaded = load_model(model, dev)
    steps = steps if steps is not None else (loaded.distilled_steps or 64)
    names = class_names_of(loaded.meta.get("provenance", {}).get("data"))
    resolve(loaded.model, loaded.guidance, class_spec, guidance, 1, names)  # bad --class/--guidance fail first
    say_distilled(model, loaded.distilled_steps, sampler)

    def batches(num: int, seed: int, batch: int) -> Iterator[np.ndarray]:
        classes, w = resolve(loaded.model, loaded.guidance, class_spec, guidance, num, names)
        for x in sample_batches(loaded, steps, num, seed, batch, dev, spacing, clip, classes=classes, guidance=w,
                                sampler=sampler):
            yield to_uint8(x)

    cfg = loaded.model.config
    return Drawer(named, steps, compute_label(dev), batches, sampler, (cfg.in_channels, cfg.image_size, cfg.image_size))


def say_distilled(model: str, distilled_steps: int | None, sampler: str) -> None:
    """A distilled model walked by another sampler than DDIM: allowed, and said (on stderr)."""
    note = distilled_note(model, distilled_steps, sampler)
    if note:
        say("note", "", note)


def ort_provider(device: str | None) -> str:
    """`--device` in onnxruntime's terms: auto, cpu or cuda (device 0)."""
    if device in (None, "", "auto", "cpu", "cuda", "cuda:0"):
        return {"cuda:0": "cuda"}.get(device or "auto", device or "auto")
    raise DsdError(f"device {device!r} is not available to onnxruntime here; use auto, cpu or cuda")


def check_baked(path: Path, meta: dict, steps: int | None, spacing: str | None, clip: bool | None,
                sampler: str | None = None) -> None:
    """An exported sampler has its steps, grid, clipping and sampler baked in; asking for others is an error."""
    hint = "export another with dsd export --onnx"
    baked = meta.get("sampler") or "ddim"  # files from before --sampler are DDIM
    if sampler is not None and sampler != baked:
        raise DsdError(f"{path} samples with {baked}, not {sampler}; {hint} --sampler {sampler}")
    if steps is not None and steps != meta["steps"]:
        raise DsdError(f"{path} samples in {meta['steps']} steps, not {steps}; {hint} --steps {steps}")
    if spacing is not None and spacing != meta["spacing"]:
        raise DsdError(f"{path} walks the {meta['spacing']} timestep grid, not {spacing}; {hint} --spacing {spacing}")
    if clip is not None and clip != meta["clip_x0"]:
        raise DsdError(f"{path} was exported with{'' if meta['clip_x0'] else 'out'} x0 clipping; {hint}")


def ort_drawer(model: str | None, steps: int | None, spacing: str | None, clip: bool | None,
               device: str | None, threads: int | None, batch: int = 1, class_spec: str | None = None,
               guidance: float | None = None, sampler_name: str | None = None) -> Drawer:
    """`batch`: the batch size to set the session up for now, so that timing a draw does not include it.
    `sampler_name`: the --sampler asked for (None: the file's own; a checkpoint exports with DDIM)."""
    from exporters.runtime import CUDA, OnnxSampler, require_onnxruntime

    require_onnxruntime("sampling with onnxruntime")  # before an export to the cache, not after it
    provider = ort_provider(device)
    export = None  # a checkpoint's: make (or make again) its cached export
    if model is not None and Path(model).suffix.lower() == ".onnx":
        path, named = Path(model), model
    else:
        require_torch("--backend ort with a checkpoint (it is exported to ONNX on first use)")
        from dsd_core.builtins import default_model
        from exporters.cache import cached_export

        named = model or f"{default_model(steps)} (the default)"
        model = model or default_model(steps)

        def announce(p: Path, why: str | None) -> None:
            again = "" if why is None else f"the cached export {p} is not this model's ({why}); "
            err_console.print(Text(safe_text(f"{again}exporting {model} to the ONNX cache ({p}); later runs reuse it")),
                              highlight=False, soft_wrap=True, emoji=False)

        def export(broken: str | None = None) -> tuple[Path, int]:
            return cached_export(model, steps, spacing or "trailing", True if clip is None else clip, announce,
                                 sampler_name or "ddim", broken)

        path, steps = export()
    if threads is None:  # without importing torch
        from dsd_core.threads import onnx_threads

        threads = onnx_threads()
    try:
        sampler = OnnxSampler(path, threads, provider, batch)
    except DsdError as exc:
        if export is None:
            raise
        # a cached file with the right metadata that onnxruntime cannot open (torn, damaged): export it again
        path, steps = export(str(exc).replace(str(path), "it"))
        sampler = OnnxSampler(path, threads, provider, batch)
    check_baked(path, sampler.metadata, steps, spacing, clip, sampler_name)
    if provider == "cuda" and sampler.provider != CUDA:
        raise DsdError("--device cuda was asked for but onnxruntime could not load its CUDA provider")
    sampler.session(batch)
    if not sampler.num_classes and (class_spec not in (None, "none") or guidance is not None):
        raise DsdError(f"{'--class' if class_spec is not None else '--guidance'} needs a class-conditional model; "
                       f"{path} is unconditional")
    if guidance is not None and not sampler.takes_guidance:
        raise DsdError(f"{path} was exported without a guidance input; export it again to use --guidance")
    class_ids(class_spec, 1, sampler.num_classes or None, sampler.class_names)  # a bad --class fails first
    say_distilled(str(named), sampler.metadata.get("distilled_steps"), sampler.sampler)

    def batches(num: int, seed: int, batch: int) -> Iterator[np.ndarray]:
        labels = class_ids(class_spec, num, sampler.num_classes or None, sampler.class_names)
        for images in sampler.batches(num, seed, class_labels=labels, batch=batch, guidance=guidance):
            yield to_uint8(images * 2 - 1)

    return Drawer(str(named), sampler.steps,
                  f"onnxruntime {sampler.provider}, {threads} thread{'s' if threads != 1 else ''}", batches,
                  sampler.sampler, tuple(sampler.image_shape))
