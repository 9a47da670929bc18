"""`export_onnx`: a checkpoint as one validated ONNX file (the unrolled sampler, or the denoiser alone).

Exporter: the legacy TorchScript one (`dynamo=False`, opset 17). It needs only the `onnx` package, exports
the unrolled sampler in seconds and writes one self-contained file; the dynamo exporter would add an
`onnxscript` dependency, export more slowly and write the weights to a separate `.onnx.data` file by default.
Our UNet uses plain ops only, so the legacy tracer loses nothing. Nothing is written until `onnx.checker` and
an onnxruntime-vs-torch parity run on fixed noise pass; the file is then written atomically.
"""

from __future__ import annotations

import copy
import io
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dsd_core import __version__
from dsd_core.atomic import atomic_write_bytes, refuse_linked_run_folder
from dsd_core.checkpoint import LoadedModel
from dsd_core.classes import class_names_of
from dsd_core.errors import DsdError, OptionError
from dsd_core.noise import initial_noise
from dsd_core.solvers_plan import check_sampler

from . import metadata as md
from .graphs import SamplerGraph, StepGraph
from .runtime import require_onnxruntime

OPSET = 17
PARITY_TOLERANCE = 1e-4


@dataclass
class ExportReport:
    """What was written and how well onnxruntime reproduces torch on it."""

    path: Path
    kind: str  # "sampler" or "step"
    steps: int | None
    max_abs_diff: float
    seconds: float
    opset: int = OPSET


def check_output_path(out: str | Path) -> Path:
    """Fail before exporting, not after, when OUT cannot be an ONNX file we may write."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise DsdError(f"export target {out} must end in .onnx")
    refuse_linked_run_folder(out)  # RUN/onnx linked elsewhere: the export would land outside the run
    if out.is_dir():
        raise DsdError(f"export target {out} is a folder")
    if out.parent.exists() and not out.parent.is_dir():
        raise DsdError(f"cannot write to {out}: {out.parent} is a file, not a folder")
    if not out.parent.is_dir():
        raise DsdError(f"output folder does not exist: {out.parent}")
    if not os.access(out.parent, os.W_OK):
        raise DsdError(f"cannot write to {out.parent}: permission denied")
    return out


def _inputs(loaded: LoadedModel, kind: str, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Fixed example inputs: seeded noise, timesteps spread over the schedule, every class incl. the null one."""
    cfg = loaded.model.config
    x = torch.from_numpy(initial_noise(seed, batch, (cfg.in_channels, cfg.image_size, cfg.image_size)))
    extra = (torch.arange(batch, dtype=torch.long) % (cfg.num_classes + 1),) if cfg.num_classes else ()
    if kind == "sampler":
        scales = (torch.tensor([0.0, 1.0, 3.0, 2.0], dtype=torch.float32).repeat(batch)[:batch],) if extra else ()
        return (x, *extra, *scales)
    t = torch.linspace(loaded.schedule.num_timesteps - 1, 0, batch).round().long()
    return (x, t, *extra)


def _trace(graph: torch.nn.Module, example: tuple, inputs: list[str], outputs: list[str]) -> bytes:
    buf = io.BytesIO()
    axes = {name: {0: md.BATCH} for name in inputs + outputs}
    with warnings.catch_warnings(), torch.no_grad():
        # the tracer warns about the (constant) timestep range check in the schedule and about its own age
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, example, buf, dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, dynamic_axes=axes, do_constant_folding=True)
    return buf.getvalue()


def _with_metadata(data: bytes, meta: dict) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    proto.producer_name, proto.producer_version = "dsd", __version__
    proto.doc_string = f"dsd {meta['kind']} export ({meta['steps']} steps)" if meta["steps"] else "dsd step model"
    entry = proto.metadata_props.add()
    entry.key, entry.value = md.META_KEY, json.dumps(meta)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx raises ValidationError and InferenceError
        raise DsdError(f"the exported graph failed onnx.checker: {str(exc).splitlines()[0]}") from None
    return proto.SerializeToString()


def _parity(data: bytes, graph: torch.nn.Module, example: tuple, names: list[str]) -> float:
    """Max |onnxruntime − torch| on the fixed example inputs, run on the CPU with one thread."""
    ort = require_onnxruntime("checking an export")

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_free_dimension_override_by_name(md.BATCH, len(example[0]))  # see runtime.open_session
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = graph(*example).numpy()
    got = session.run(None, {name: t.numpy() for name, t in zip(names, example)})[0]
    return float(np.abs(got - expected).max())


def export_onnx(
    loaded: LoadedModel,
    out: str | Path,
    steps: int | None = None,
    step_model: bool = False,
    source_sha256: str = "",
    batch_for_parity: int = 4,
    seed: int = 0,
    spacing: str = "trailing",
    clip_x0: bool = True,
    sampler: str | None = None,
) -> ExportReport:
    """Export the N-step sampler (default N: the step count the model was distilled for; `sampler`: DDIM unless
    named) or, with `step_model`, the denoiser; validate; write atomically. A parity error above 1e-4 writes
    nothing; a sampler named for a step model is an error (it has no walk)."""
    start = time.perf_counter()
    require_onnxruntime("checking an export")  # before the work, not after it
    out = check_output_path(out)
    kind = "step" if step_model else "sampler"
    steps = steps if steps is not None else loaded.distilled_steps
    if kind == "step" and sampler is not None:
        raise OptionError("{step_model} exports the denoiser alone, which has no sampler; drop {sampler}")
    sampler = check_sampler(sampler)
    if kind == "sampler" and steps is None:
        raise OptionError("this model was not distilled for a step count; say how many sampling steps ({steps} N)")
    if batch_for_parity < 1:
        raise DsdError(f"the parity batch must be at least 1, got {batch_for_parity}")
    loaded = copy.copy(loaded)
    loaded.model = copy.deepcopy(loaded.model).cpu().eval()
    cfg = loaded.model.config
    graph = (SamplerGraph(loaded, steps, spacing, clip_x0, sampler) if kind == "sampler" else StepGraph(loaded)).eval()
    inputs, outputs = md.io_names(kind, bool(cfg.num_classes))
    trace_example = _inputs(loaded, kind, 2, seed + 1)
    meta = {
        "format": md.FORMAT,
        "format_version": md.FORMAT_VERSION,
        "kind": kind,
        "steps": steps,
        "timesteps": [list(p) for p in graph.pairs] if kind == "sampler" else None,
        "spacing": spacing if kind == "sampler" else None,
        "clip_x0": clip_x0 if kind == "sampler" else None,
        "sampler": sampler if kind == "sampler" else None,
        "prediction": loaded.prediction,
        "image_shape": md.image_shape(cfg.to_dict()),
        "num_classes": cfg.num_classes or 0,
        "guidance": loaded.guidance if cfg.num_classes else None,
        "class_names": list(class_names_of(loaded.meta.get("provenance", {}).get("data")) or []) or None,
        "output_range": [0, 1] if kind == "sampler" else None,
        "inputs": inputs,
        "outputs": outputs,
        "model_config": cfg.to_dict(),
        "schedule": loaded.schedule.to_dict(),
        "distilled_steps": loaded.distilled_steps,
        "source_sha256": source_sha256,
        "package_version": __version__,
        "opset": OPSET,
    }
    data = _with_metadata(_trace(graph, trace_example, inputs, outputs), meta)
    example = _inputs(loaded, kind, batch_for_parity, seed)
    diff = _parity(data, graph, example, inputs)
    if not diff <= PARITY_TOLERANCE:  # also catches NaN
        raise DsdError(f"onnxruntime differs from torch by {diff:.2e} (> {PARITY_TOLERANCE:g}); nothing written")
    path = atomic_write_bytes(out, data)
    return ExportReport(path, kind, steps, diff, time.perf_counter() - start)
