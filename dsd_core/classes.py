"""Which class each sampled image is asked for (`--class`): numpy only, so the torch-free ONNX path uses it too."""

from __future__ import annotations

import numpy as np

from .errors import DsdError, OptionError

# The emoji data's labels (`--data emoji`, `emoji16`): emoji-datasource's categories in its own order, their ids
# the positions here. Kept in code, not read from the data file, so the torch-free sampler knows them too.
EMOJI_CATEGORIES = ("Smileys & Emotion", "People & Body", "Component", "Animals & Nature", "Food & Drink",
                    "Travel & Places", "Activities", "Objects", "Symbols", "Flags")


def not_conditional(field: str) -> OptionError:
    """The error for a class or a guidance scale (`field`) given to an unconditional model."""
    return OptionError(f"{{{field}}} needs a class-conditional model; this one is unconditional")


def class_names_of(data: str | None) -> tuple[str, ...] | None:
    """The class names of a model trained on `data` (its provenance's data name, e.g. `emoji:train`, or the
    `--data` spec); None where the ids are the names (digits) or the data has no known names."""
    base = (data or "").split(":")[0]
    return EMOJI_CATEGORIES if base in ("emoji", "emoji16") else None


def _squash(name: str) -> str:
    """A name as `--class` matches it: lower case, letters and digits only ("food-drink" is "Food & Drink")."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def class_by_name(spec: str, names: tuple[str, ...] | list[str]) -> int:
    """The id of the class `spec` names: its whole name or a unique start of it, case, spaces and punctuation
    aside (`food`, `people-body`); else a one-line error that lists the valid names."""
    want = _squash(spec)
    exact = [i for i, n in enumerate(names) if _squash(n) == want]
    starts = [i for i, n in enumerate(names) if want and _squash(n).startswith(want)]
    found = exact or starts
    if len(found) == 1:
        return found[0]
    listed = ", ".join(f"{i} {n}" for i, n in enumerate(names))
    why = "matches several of" if found else "is none of"
    raise OptionError("{class} {spec!r} " + why + " this model's classes: {listed}; or give an id, 'all' or 'none'",
                      spec=spec, listed=listed)


def class_ids(spec: str | int | None, num: int, num_classes: int | None,
              names: tuple[str, ...] | list[str] | None = None) -> np.ndarray | None:
    """Per-image class ids from `--class`: an id, a class name (where the model's `names` are known, see
    `class_names_of`), `all` (ids cycle 0, 1, …, K−1, 0, …) or `none` (null class).

    None for an unconditional model (and `spec` None); a conditional model without `--class` cycles.
    """
    if num_classes is None:
        if spec not in (None, "none"):
            raise not_conditional("class")
        return None
    raw = "all" if spec is None else str(spec).strip()
    spec = raw.lower()
    if spec == "all":
        return np.arange(num, dtype=np.int64) % num_classes
    if spec == "none":
        return np.full(num, num_classes, dtype=np.int64)
    try:
        c = int(spec)
    except ValueError:
        if names is None or len(names) != num_classes:
            raise OptionError("{class} must be a class id, 'all' or 'none', got {spec!r}", spec=spec) from None
        c = class_by_name(raw, names)
    if not 0 <= c < num_classes:
        raise DsdError(f"class {c} is out of range: this model has classes 0 … {num_classes - 1}")
    return np.full(num, c, dtype=np.int64)
