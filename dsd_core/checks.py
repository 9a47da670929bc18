"""Checks of single settings shared by the config dataclasses, the engine and the torch-free ONNX path: one
definition each, raising an `OptionError` that names the field."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from collections.abc import Iterator

from .errors import DsdError, OptionError
from .limits import MAX_SEED


def at_least(low: int, **settings: int) -> None:
    """Each setting (field=value) at least `low`."""
    for field, value in settings.items():
        if value < low:
            raise OptionError(f"{{{field}}} must be at least {low}, got {{value}}", value=value)


def positive(**settings: float) -> None:
    """Each setting a finite number above 0 (an infinite learning rate would run until its first NaN)."""
    for field, value in settings.items():
        if not (math.isfinite(value) and value > 0):
            raise OptionError(f"{{{field}}} must be a finite number above 0, got {{value}}", value=value)


def below_one(**settings: float) -> None:
    """Each setting in [0, 1): a probability or a decay."""
    for field, value in settings.items():
        if not 0 <= value < 1:
            raise OptionError(f"{{{field}}} must be in [0, 1), got {{value}}", value=value)


def check_guidance_scale(scale: float | None) -> None:
    """w of classifier-free guidance: None (the model's own) or a finite number ≥ 0."""
    if scale is not None and not (math.isfinite(scale) and scale >= 0):
        raise OptionError("{guidance} must be a finite number ≥ 0, got {scale}", scale=scale)


def check_threads(threads: int | None) -> None:
    """CPU threads: None (the default) or at least 1."""
    if threads is not None:
        at_least(1, threads=threads)


def check_seed(**settings: int) -> None:
    """Each seed a whole number in [0, MAX_SEED]: torch.Generator.manual_seed overflows above 64 bits, and
    numpy's PCG64 (the noise of `dsd sample`) refuses negative seeds."""
    for field, value in settings.items():
        if not 0 <= value <= MAX_SEED:
            raise OptionError(f"{{{field}}} must be a whole number from 0 to {MAX_SEED} (2**64 - 1), got {{value}}",
                              value=value)


def json_type(value: object) -> str:
    """What JSON calls a value's type, for messages: `a JSON list`."""
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else f"a JSON {names.get(type(value), type(value).__name__)}"


def config_from_file(config_class, data: object, source: object, section: str = "", complete: bool = False):
    """A config dataclass from a JSON object read from a file (a run's config.json, a checkpoint's metadata),
    checked as its flags are: an object, every field present (if `complete`; else a missing field, one an older
    dsd did not write, takes its default, or the class's `FILE_DEFAULTS` value where the default has changed
    since: what the older run ran with), no other key, each value of its field's type, then the dataclass's
    own checks. A file is no more trusted than a flag, and typer checks the
    flags' types: any failure here is one line naming the file and the field, never a TypeError deep inside."""
    name = f"{section}." if section else ""
    if not isinstance(data, dict):
        raise DsdError(f"{source}: {section or 'the config'} must be a JSON object, not {json_type(data)}")
    hints = typing.get_type_hints(config_class)
    fields = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(data) - set(fields))
    missing = [f for f in fields if f not in data] if complete else []
    if unknown or missing:
        said = [f"unknown {', '.join(name + k for k in unknown)}"] if unknown else []
        said += [f"no {', '.join(name + k for k in missing)}"] if missing else []
        raise DsdError(f"{source}: {'; '.join(said)}")
    for key, value in data.items():
        if not _fits(value, hints[key]):
            raise DsdError(f"{source}: {name}{key} must be {_wanted(hints[key])}, got {str(value)[:40]!r}")
    with fields_of(source, section):
        return config_class(**{**getattr(config_class, "FILE_DEFAULTS", {}), **data})


@contextlib.contextmanager
def fields_of(source: object, section: str = "") -> Iterator[None]:
    """Errors raised within are about settings read from a file: they name the file, and the fields as its keys
    (`distill.updates`), not as flags the user never gave."""
    try:
        yield
    except OptionError as exc:
        raise DsdError(f"{source}: {exc.render(lambda f: f'{section}.{f}' if section else f)}") from None
    except DsdError as exc:
        raise DsdError(f"{source}: {exc}") from None


def _arms(hint) -> tuple:
    """The types a hint allows: (int, None) for `int | None`."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _fits(value: object, hint) -> bool:
    """Whether a JSON value is of a field's type: bools are not numbers, ints are floats, lists are tuples."""
    for arm in _arms(hint):
        if arm is type(None) and value is None:
            return True
        if typing.get_origin(arm) is tuple:
            if isinstance(value, (list, tuple)) and all(_fits(v, typing.get_args(arm)[0]) for v in value):
                return True
        elif arm is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        elif arm in (int, str, bool) and isinstance(value, arm) and (arm is bool or not isinstance(value, bool)):
            return True
    return False


def _wanted(hint) -> str:
    """A field's type in words: `a whole number or null`."""
    words = {int: "a whole number", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    return " or ".join("a list of whole numbers" if typing.get_origin(a) is tuple else words.get(a, str(a))
                       for a in _arms(hint))
