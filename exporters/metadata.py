"""What a dsd ONNX file says about itself: one JSON object under the metadata key `dsd`, and the graph's
input/output names. Torch-free, so the runtime reads it with onnxruntime alone.

A conditional model's sampler takes `class` and `guidance` (per-sample w of classifier-free guidance) inputs;
files exported before guidance existed have `class` alone. Readers look inputs up by name, never by position.
"""

from __future__ import annotations

import json

from dsd_core.errors import DsdError

META_KEY = "dsd"
FORMAT = "dsd-onnx"
FORMAT_VERSION = 1
KINDS = ("sampler", "step")
BATCH = "batch"  # the name of every input's and output's dynamic first axis

NOISE, CLASS, IMAGES = "noise", "class", "images"  # the sampler: noise[, class, guidance] → images in [0, 1]
GUIDANCE = "guidance"  # float32 per sample: uncond + w·(cond − uncond)
X, T, PREDICTION = "x", "t", "prediction"  # the denoiser: (x, t[, class]) → ε/x0/v prediction


def io_names(kind: str, conditional: bool) -> tuple[list[str], list[str]]:
    """The graph's input and output names for a kind of export."""
    extra = [CLASS] if conditional else []
    if kind == "sampler":
        return [NOISE, *extra, *([GUIDANCE] if conditional else [])], [IMAGES]
    return [X, T, *extra], [PREDICTION]


def image_shape(model_config: dict) -> list[int]:
    """[C, H, W] of the images a model makes."""
    size = int(model_config["image_size"])
    return [int(model_config["in_channels"]), size, size]


def read_meta(custom: dict[str, str], path: str) -> dict:
    """The dsd object from an ONNX file's metadata props; a file not written by dsd is a one-line error."""
    if META_KEY not in custom:
        raise DsdError(f"{path} is an ONNX file but not a dsd export (no dsd metadata); export with dsd export --onnx")
    try:
        meta = json.loads(custom[META_KEY])
    except json.JSONDecodeError:
        raise DsdError(f"{path} has corrupt dsd metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DsdError(f"{path} has dsd metadata of an unknown format")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DsdError(f"{path} has dsd ONNX format {meta.get('format_version')!r}; this dsd reads {FORMAT_VERSION}")
    if meta.get("kind") not in KINDS:
        raise DsdError(f"{path}: unknown dsd export kind {meta.get('kind')!r}")
    return meta
