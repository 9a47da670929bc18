"""The README's command table says what `dsd CMD --help` says: every option it names exists, and every number
it gives an option is that option's default. The defaults live in one place (dsd_core/defaults.py and the
config dataclasses); this keeps the README from drifting away from them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsd_tui.cli import COMMANDS
from dsd_tui.cli.lazy import load

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e-?\d+)?$")


def table_rows() -> dict[str, str]:
    """command name → the usage cell of its row in README's "Commands" table."""
    section = (ROOT / "README.md").read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\| `dsd ([a-z-]+)(.*?)` \|", line)
        if match:
            rows[match.group(1)] = match.group(2).replace("\\|", "|")
    return rows


def options_of(command) -> dict:
    names = {}
    for param in command.params:
        for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            names[opt] = param
    return names


def test_the_table_lists_every_command():
    assert set(table_rows()) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_named_options_exist_and_numbers_are_defaults(name):
    usage = table_rows()[name]
    options = options_of(load(name, COMMANDS[name]))
    tokens = usage.replace("[", " ").replace("]", " ").split()
    for i, token in enumerate(tokens):
        if not token.startswith("--"):
            continue
        for flag in token.split("/"):  # --ema-teacher/--self-teacher
            assert flag in options, f"README names {flag} for dsd {name}, which has no such option"
        value = tokens[i + 1] if i + 1 < len(tokens) else ""
        if NUMBER.match(value):
            default = options[token].default
            assert default is not None and float(default) == float(value), (
                f"README gives dsd {name} {token} {value}; its default is {default}")
