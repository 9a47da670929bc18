"""Which class each sampled image is asked for (`--class`): numpy only, so the torch-free ONNX path uses it too."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

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


def proportional_counts(counts: Sequence[int], num: int) -> np.ndarray:
    """How many of `num` images each class gets for the label `counts` c_k (sum C): floor(num·c_k/C), plus one
    for the largest remainders (ties to the lower id), so each is within 1 of num·c_k/C and they sum to num."""
    c = _label_counts(counts)
    if num < 0:
        raise DsdError(f"the number of images must be ≥ 0, got {num}")
    total = int(c.sum())
    share = [num * int(ck) // total for ck in c]
    left = num - sum(share)
    by_remainder = sorted(range(len(c)), key=lambda k: (-(num * int(c[k]) - share[k] * total), k))
    for k in by_remainder[:left]:
        share[k] += 1
    return np.array(share, dtype=np.int64)


def proportional_ids(counts: Sequence[int], num: int) -> np.ndarray:
    """`num` class ids in the proportions of the label `counts` (exactly `proportional_counts`), interleaved so
    that every prefix is in proportion too: FD of the first n samples must not judge another class mix.

    The j-th id of class k has a window of positions, (j−1)·C/c_k < t ≤ j·C/c_k rounded up, inside which each
    prefix's count of class k stays within 1 of n·c_k/C; earliest deadline first (ties to the lower id) fills
    the positions. No randomness: the same counts give the same list.
    """
    c, quota = _label_counts(counts), proportional_counts(counts, num)
    total = int(c.sum())

    def window(k: int, j: int) -> tuple[int, int]:  # (release, deadline) of the j-th id of class k, 1-based
        return (j - 1) * total // int(c[k]) + 1, min(num, -(-j * total // int(c[k])))

    waiting = [(*window(k, 1), k) for k in range(len(c)) if quota[k]]
    heapq.heapify(waiting)
    ready, placed, ids = [], [0] * len(c), np.empty(num, dtype=np.int64)
    for t in range(1, num + 1):
        while waiting and (waiting[0][0] <= t or not ready):  # nothing ready (never, by the windows): take the next
            _, deadline, k = heapq.heappop(waiting)
            heapq.heappush(ready, (deadline, k))
        _, k = heapq.heappop(ready)
        ids[t - 1], placed[k] = k, placed[k] + 1
        if placed[k] < quota[k]:
            heapq.heappush(waiting, (*window(k, placed[k] + 1), k))
    return ids


def _label_counts(counts: Sequence[int]) -> np.ndarray:
    """`counts` as int64, refused (one line) unless whole, non-negative and not all zero."""
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0 or not np.issubdtype(c.dtype, np.integer) or (c < 0).any() or c.sum() == 0:
        raise DsdError(f"class counts must be whole numbers ≥ 0, not all 0; got {list(np.ravel(c))}")
    return c.astype(np.int64)


def class_ids(spec: str | int | None, num: int, num_classes: int | None,
              names: tuple[str, ...] | list[str] | None = None,
              counts: Sequence[int] | None = None) -> np.ndarray | None:
    """Per-image class ids from `--class`: an id, a class name (where the model's `names` are known, see
    `class_names_of`), `all` (ids cycle 0, 1, …, K−1, 0, …), `data` (in the proportions of a reference's label
    `counts`, see `proportional_ids`) or `none` (null class).

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
    if spec == "data":
        return proportional_ids(_data_counts(counts, num_classes), num)
    try:
        c = int(spec)
    except ValueError:
        if names is None or len(names) != num_classes:
            raise OptionError("{class} must be a class id, 'all' or 'none' (or 'data' in eval), got {spec!r}",
                              spec=spec) from None
        c = class_by_name(raw, names)
    if not 0 <= c < num_classes:
        raise DsdError(f"class {c} is out of range: this model has classes 0 … {num_classes - 1}")
    return np.full(num, c, dtype=np.int64)


def _data_counts(counts: Sequence[int] | None, num_classes: int) -> Sequence[int]:
    """The label counts `--class data` follows: there must be some, one per class of the model."""
    if counts is None:
        raise OptionError("{class} data needs the labels of a reference set: `dsd eval` with a {reference} of "
                          "digits, emoji16 or emoji", field="class")
    if len(counts) != num_classes:
        raise OptionError("{class} data: the reference's labels are of {k} classes but this model has {m}",
                          k=len(counts), m=num_classes)
    return counts
