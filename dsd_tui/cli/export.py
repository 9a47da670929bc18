"""`dsd export --onnx`: a checkpoint as one ONNX file — the unrolled few-step sampler or the denoiser alone —
validated (onnx.checker, onnxruntime-vs-torch parity) before it is written."""

from __future__ import annotations

from pathlib import Path

import typer

from dsd_core.errors import DsdError
from dsd_core.interrupt import terminated_as_interrupt
from dsd_core.solvers_plan import LABEL, SAMPLERS, check_sampler

from .common import (
    ForceOption,
    ThreadsOption,
    compute_label,
    phase,
    refuse_overwrite,
    setup_device,
    tell,
    user_errors,
)


def export(
    out: Path = typer.Argument(..., help="OUT.onnx"),
    onnx: bool = typer.Option(False, "--onnx", help="Export to ONNX (the only format so far)."),
    model: str = typer.Option(None, "--model", "-m",
                              help="Built-in name or checkpoint path (default: the best shipped model distilled for "
                                   "--steps, or 8: digits-v-dsdN)."),
    steps: int = typer.Option(None, "--steps", "-s",
                              help="Sampler steps (default: the count the model was distilled for)."),
    step_model: bool = typer.Option(False, "--step-model",
                                    help="Export the denoiser alone: (x, t[, class]) → prediction."),
    sampler: str = typer.Option(None, "--sampler",
                                help=f"{'|'.join(SAMPLERS)}: the sampler unrolled into the graph (default: ddim)."),
    spacing: str = typer.Option("trailing", "--spacing", help="Timestep grid baked into the sampler."),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="Clip the x0 estimate to [-1, 1] at each step."),
    guidance: float = typer.Option(None, "--guidance", "-w",
                                   help="Conditional models: the guidance w the file samples with by default (the "
                                        "sampler also takes w as its `guidance` input)."),
    force: bool = ForceOption,
    threads: int = ThreadsOption,
) -> None:
    """Export a model to ONNX: by default the whole N-step sampler, noise[, class, guidance] → images in [0, 1]."""
    with user_errors():
        if not onnx:
            raise DsdError("say which format: dsd export --onnx OUT.onnx")
        if step_model and sampler is not None:
            raise DsdError("--step-model exports the denoiser alone, which has no sampler; drop --sampler")
        check_sampler(sampler)
        from dsd_core.builtins import default_model, resolve_model_path
        from dsd_core.checkpoint import file_sha256, load_model
        from exporters.onnx_export import check_output_path, export_onnx
        from exporters.runtime import require_onnxruntime

        require_onnxruntime("checking an export")  # before any work and any output
        check_output_path(out)
        refuse_overwrite(out, force)
        model = model or default_model(steps)
        dev = setup_device("cpu", threads)
        loaded = load_model(model)
        if guidance is not None:
            from dsd_core.guidance import check_guidance

            check_guidance(loaded.model, None, guidance)
            loaded.meta = {**loaded.meta, "guidance": guidance}
        n = steps if steps is not None else loaded.distilled_steps
        label = LABEL[check_sampler(sampler)]
        if not step_model:  # the sampler's grid, checked before the export starts
            from dsd_core.timesteps import ddim_timesteps

            from .backends import say_distilled

            if n is None:
                raise DsdError("this model was not distilled for a step count; say how many sampling steps (--steps N)")
            ddim_timesteps(n, loaded.schedule.num_timesteps, spacing)
            say_distilled(model, loaded.distilled_steps, check_sampler(sampler))
        what = "denoiser (step model)" if step_model else f"{n}-step sampler ({label})"
        tell(f"exporting the {what} of {model} to {out} on {compute_label(dev)}")
        with phase("exporting and checking onnxruntime against torch"), terminated_as_interrupt(f"{out} is as it was"):
            report = export_onnx(loaded, out, steps, step_model=step_model,
                                 source_sha256=file_sha256(resolve_model_path(model)), spacing=spacing, clip_x0=clip,
                                 sampler=sampler)
        what = f"{report.steps}-step sampler ({label})" if report.kind == "sampler" else "denoiser (step model)"
        tell(
            f"wrote {report.path}: the {what} of {model}, opset {report.opset}, "
            f"{report.path.stat().st_size / 1e6:.1f} MB, {report.seconds:.1f} s — onnx.checker ok; "
            f"onnxruntime vs torch max abs diff {report.max_abs_diff:.2e} (limit 1e-4)"
        )
