"""Which class each sampled image is asked for (`--class`): numpy only, so the torch-free ONNX path uses it too."""

from __future__ import annotations

import numpy as np

from .errors import DsdError, OptionError


def not_conditional(field: str) -> OptionError:
    """The error for a class or a guidance scale (`field`) given to an unconditional model."""
    return OptionError(f"{{{field}}} needs a class-conditional model; this one is unconditional")


def class_ids(spec: str | int | None, num: int, num_classes: int | None) -> np.ndarray | None:
    """Per-image class ids from `--class`: an id, `all` (ids cycle 0, 1, …, K−1, 0, …) or `none` (null class).

    None for an unconditional model (and `spec` None); a conditional model without `--class` cycles.
    """
    if num_classes is None:
        if spec not in (None, "none"):
            raise not_conditional("class")
        return None
    spec = "all" if spec is None else str(spec).strip().lower()
    if spec == "all":
        return np.arange(num, dtype=np.int64) % num_classes
    if spec == "none":
        return np.full(num, num_classes, dtype=np.int64)
    try:
        c = int(spec)
    except ValueError:
        raise OptionError("{class} must be a class id, 'all' or 'none', got {spec!r}", spec=spec) from None
    if not 0 <= c < num_classes:
        raise DsdError(f"class {c} is out of range: this model has classes 0 … {num_classes - 1}")
    return np.full(num, c, dtype=np.int64)
