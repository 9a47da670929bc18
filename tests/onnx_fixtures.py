"""Tiny exported models shared by the ONNX tests (module-scoped: each export takes about a second)."""

from __future__ import annotations

from dsd_core.checkpoint import file_sha256, load_model, save_model
from dsd_core.schedule import NoiseSchedule
from exporters.onnx_export import export_onnx

from .conftest import tiny_unet

STEPS = 3


def tiny_checkpoint(path, num_classes=None, prediction="eps", distilled_steps=STEPS):
    """A random tiny UNet (non-zero output layers, so predictions are not all 0) saved as a checkpoint."""
    return save_model(path, tiny_unet(num_classes), NoiseSchedule("linear"), prediction, ema=True,
                      distilled_steps=distilled_steps)


def tiny_export(folder, name="tiny", step_model=False, **ckpt):
    """(checkpoint path, ExportReport) for a freshly made tiny checkpoint."""
    ckpt_path = tiny_checkpoint(folder / f"{name}.safetensors", **ckpt)
    report = export_onnx(load_model(ckpt_path), folder / f"{name}{'-step' if step_model else ''}.onnx",
                         step_model=step_model, source_sha256=file_sha256(ckpt_path))
    return ckpt_path, report
