"""The engine names a setting by its config field, and each front end says it in its own words: the CLI its
option (`--to`), the terminal app its form label (`to steps`), the Python API the bare field (`n_to`). No
message in dsd_core or exporters spells a command-line option itself, except the kept ones below."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from dsd_core.checks import check_guidance_scale, check_threads
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.stepping import StepsError, build_stages
from dsd_core.errors import DsdError, OptionError, OptionWarning
from dsd_tui.cli import COMMANDS
from dsd_tui.cli.common import cli_text, flag
from dsd_tui.cli.lazy import load
from dsd_tui.tui.setup_form import app_text

ROOT = Path(__file__).resolve().parents[1]

# (file, option) → why the message may spell it: each names *another* command, as advice on what to run.
KEPT = {
    ("dsd_core/loop.py", "--resume"): "the Ctrl-C message names the command that resumes: dsd train|distill --resume",
    ("dsd_core/diffusers_io.py", "--onnx"): "advice to run another command: dsd export --onnx",
    ("exporters/metadata.py", "--onnx"): "advice to run another command: export with dsd export --onnx",
    ("exporters/runtime.py", "--step-model"): "what `dsd export --step-model` wrote, and how to export instead",
    ("exporters/runtime.py", "--onnx"): "advice to run another command: dsd export --onnx without --step-model",
}


def test_one_error_three_wordings():
    exc = OptionError("{n_from} {a} must be at least twice {n_to} {b}", "n_to", a=8, b=8)
    assert isinstance(exc, DsdError) and exc.field == "n_to" and exc.fields == ("n_from", "n_to")
    assert str(exc) == "n_from 8 must be at least twice n_to 8"
    assert cli_text(exc) == "--from 8 must be at least twice --to 8"
    assert app_text(exc) == "from steps 8 must be at least twice to steps 8"


@pytest.mark.parametrize("field, option", [("ema_decay", "--ema"), ("n_from", "--from"), ("n_to", "--to"),
                                           ("compile", "--compile"), ("sample_every", "--sample-every"),
                                           ("guidance", "--guidance"), ("save_format", "--save-format")])
def test_fields_become_options(field, option):
    assert flag(field) == option


def test_values_are_never_read_as_fields():
    exc = OptionError("{class} must be a class id, got {spec!r}", spec="{lr}")
    assert exc.field == "class" and cli_text(exc) == "--class must be a class id, got '{lr}'"
    assert cli_text(DsdError("plain {text}")) == "plain {text}"  # not an OptionError: as it is


def test_warnings_are_worded_the_same_way():
    said = OptionWarning("use a lower {ema_decay} than {d:g}", d=0.999)
    assert isinstance(said, UserWarning) and str(said) == "use a lower ema_decay than 0.999"
    assert cli_text(said) == "use a lower --ema than 0.999"


def test_engine_checks_name_their_field():
    checks = [(lambda: check_guidance_scale(float("nan")), "guidance"), (lambda: check_threads(0), "threads"),
              (lambda: DistillConfig(teacher_chunks=0), "teacher_chunks"),
              (lambda: DistillConfig(n_from=24, n_to=8).stages(), "n_from"),
              (lambda: DistillConfig(method="dsd+pd", schedule="naive").stages(), "schedule")]
    for check, field in checks:
        with pytest.raises(OptionError) as info:
            check()
        assert info.value.field == field
    with pytest.raises(StepsError) as info:
        build_stages("iterative", 8, 8, 100)
    assert info.value.field == "n_to" and cli_text(info.value) == "--from 8 must be at least twice --to 8"


def dsd_options() -> set[str]:
    names = set()
    for name, target in COMMANDS.items():
        for param in load(name, target).params:
            names.update(o for o in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
                         if o.startswith("--"))
    return names


def literals(path: Path):
    """The string constants of a module, docstrings left out (they document the CLI, they are no messages)."""
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docs.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.value


def test_no_engine_message_spells_an_option():
    options, found = dsd_options(), set()
    assert {"--guidance", "--from", "--threads", "--resume"} <= options
    for folder in ("dsd_core", "exporters"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for text in literals(path):
                for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text):
                    if option in options:
                        found.add((path.relative_to(ROOT).as_posix(), option))
    assert found - set(KEPT) == set(), "spell these as {field} in an OptionError"
    assert set(KEPT) <= found, "a kept option is no longer spelled: drop it from KEPT"
