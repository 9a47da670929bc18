"""`dsd train-classifier`: the digits classifier whose features judge digit samples."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from dsd_core.classifier import save_classifier
from dsd_core.classifier import train_classifier as train

from .common import console, setup_device, user_errors


def train_classifier(
    out: Path = typer.Option(..., "--out", help="Where to write the classifier (.safetensors)."),
    epochs: int = typer.Option(40, "--epochs"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch."),
) -> None:
    """Train the digits classifier on the train split and record its held-out test accuracy."""
    with user_errors():
        setup_device("cpu", threads)
        start = time.time()
        model, acc = train(epochs=epochs, seed=seed)
        recipe = {"command": f"dsd train-classifier --out {out.name} --epochs {epochs} --seed {seed}",
                  "epochs": epochs, "seed": seed, "train_split": "digits:train", "test_split": "digits:test"}
        save_classifier(out, model, acc, recipe)
        console.print(f"wrote {out}: held-out test accuracy {acc:.4f} ({time.time() - start:.0f} s)")
