"""The one exception type that front ends turn into a one-line message and a non-zero exit, and the messages
that name a setting, which each front end words in its own terms."""

from __future__ import annotations

import string
from typing import Callable


class DsdError(Exception):
    """A user-facing problem (bad input, missing file, impossible setting); never a bug in dsd itself."""


class Named:
    """A message that names settings by field: `template` is a `str.format` string in which `{field}` stands
    for a setting (a config field such as `{n_to}`, or another setting of the call such as `{threads}`) and
    every other value is passed by keyword, e.g. `OptionError("{guidance} must be ≥ 0, got {w}", w=-1)`.

    `render(name_of)` words the fields for a front end (the CLI: `--guidance`, the terminal app: its form
    labels); `str()` gives the bare field names, for the Python API. `field` is the setting to fix: the first
    one named, unless given."""

    def __init__(self, template: str, field: str | None = None, **values: object):
        names = (name for _, name, _, _ in string.Formatter().parse(template) if name)
        self.template, self.values = template, values
        self.fields = tuple(dict.fromkeys(n for n in names if n not in values))
        self.field = field or (self.fields[0] if self.fields else None)
        super().__init__(self.render())

    def render(self, name_of: Callable[[str], str] = str) -> str:
        return self.template.format(**{f: name_of(f) for f in self.fields}, **self.values)


class OptionError(Named, DsdError):
    """A setting with an impossible value: a DsdError whose message names the setting by field (see `Named`)."""


class OptionWarning(Named, UserWarning):
    """A warning about a setting, named by field (see `Named`)."""


def render(message: object, name_of: Callable[[str], str]) -> str:
    """Any error or warning as text, fields worded by `name_of`."""
    return message.render(name_of) if isinstance(message, Named) else str(message)
