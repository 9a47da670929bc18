"""`dsd info`: what a checkpoint is — architecture, size, schedule, prediction, provenance."""

from __future__ import annotations

import json

import typer
from rich.table import Table
from rich.text import Text

from dsd_core.builtins import resolve_model_path
from dsd_core.checkpoint import file_sha256, load_model
from dsd_core.models import count_parameters
from dsd_core.text import safe_text

from .common import console, user_errors


def info(
    model: str = typer.Argument("digits", help="Built-in name or checkpoint path."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Describe a model checkpoint."""
    with user_errors():
        loaded = load_model(model)
        path = resolve_model_path(model)
        facts = {
            "path": str(path),
            "sha256": file_sha256(path),
            "parameters": count_parameters(loaded.model),
            "prediction": loaded.prediction,
            "schedule": loaded.schedule.to_dict(),
            "ema": loaded.meta.get("ema"),
            "distilled_steps": loaded.distilled_steps,
            "model_config": loaded.model.config.to_dict(),
            "provenance": loaded.meta.get("provenance", {}),
        }
        if as_json:
            print(json.dumps(facts, indent=2))
            return
        # the facts come from the file (its name, its metadata): shown as plain text, never as Rich markup
        table = Table(title=Text(f"dsd model {safe_text(model)}"), show_header=False)
        for key, value in facts.items():
            table.add_row(key, Text(safe_text(value if isinstance(value, str) else json.dumps(value))))
        console.print(table, emoji=False)
