"""Classifier-free guidance: one denoiser call mixing a class-conditional and the unconditional prediction.

Convention (diffusers' `guidance_scale`, the one the DSD authors' scale 3 refers to):

    pred = uncond + w·(cond − uncond)

so w = 0 is the unconditional model, w = 1 the plain conditional one and w > 1 pushes towards the class.
For w ∉ {0, 1} the conditional and unconditional halves run as one batch of 2B, so an `NFECounter` wrapped
around the network counts two evaluations per image and step; w = 1 and w = 0 cost one.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .checks import check_guidance_scale
from .classes import class_ids, not_conditional

Network = Callable[..., torch.Tensor]


def null_class(model) -> int | None:
    """The id of a conditional UNet's null class, None for an unconditional model."""
    config = getattr(model, "config", None)
    return getattr(config, "num_classes", None)


def guided_prediction(net: Network, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None,
                      scale: float | torch.Tensor, null: int | None) -> torch.Tensor:
    """The guided prediction at (x, t) for per-sample class `labels` (None: unconditional). `scale` is a
    number or a per-sample tensor (the ONNX sampler's `guidance` input), which always evaluates both halves."""
    if labels is None or null is None:
        return net(x, t)
    if not torch.is_tensor(scale) and scale == 1.0:
        return net(x, t, labels)
    if not torch.is_tensor(scale) and scale == 0.0:
        return net(x, t, torch.full_like(labels, null))
    both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, torch.full_like(labels, null)]))
    cond, uncond = both.float().chunk(2)
    if torch.is_tensor(scale):
        scale = scale.float().view(-1, *([1] * (cond.ndim - 1)))
    return (uncond + scale * (cond - uncond)).to(both.dtype)


def bind(net: Network, labels: torch.Tensor | None, scale: float, null: int | None) -> Callable:
    """A (x, t) → prediction denoiser for `ddim_sample` with the labels and scale fixed."""
    return lambda x, t: guided_prediction(net, x, t, labels, scale, null)


def check_guidance(model, classes, scale: float | None) -> None:
    """One-line errors for guidance or classes that the model cannot take."""
    if null_class(model) is None and (classes is not None or scale not in (None, 1.0)):
        raise not_conditional("guidance" if scale not in (None, 1.0) else "class")
    check_guidance_scale(scale)


def resolve(model, default_scale: float | None, spec: str | int | None, scale: float | None,
            num: int, names: tuple[str, ...] | None = None) -> tuple[np.ndarray | None, float]:
    """Per-image class ids and the guidance scale for sampling `num` images from `model`.

    Without `--guidance` a conditional model samples at the scale it was distilled with (`default_scale`,
    from its checkpoint), else at w = 1 (plain conditional). `names`: the model's class names, which
    `--class` may use instead of ids (`classes.class_names_of`).
    """
    check_guidance(model, None if spec in (None, "none") else spec, scale)
    classes = class_ids(spec, num, null_class(model), names)
    w = scale if scale is not None else (default_scale if default_scale is not None else 1.0)
    return classes, float(w)
