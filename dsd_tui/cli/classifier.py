"""`dsd train-classifier`: the digits classifier whose features judge digit samples."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from dsd_core.classifier import save_classifier
from dsd_core.classifier import train_classifier as train
from dsd_core.errors import DsdError

from .common import ForceOption, compute_label, progress_bar, refuse_overwrite, setup_device, tell, user_errors


def train_classifier(
    out: Path = typer.Option(..., "--out", help="Where to write the classifier (.safetensors)."),
    epochs: int = typer.Option(40, "--epochs"),
    seed: int = typer.Option(0, "--seed"),
    force: bool = ForceOption,
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch."),
) -> None:
    """Train the digits classifier on the train split and record its held-out test accuracy."""
    with user_errors():
        if epochs < 1:
            raise DsdError(f"--epochs must be at least 1, got {epochs}")
        refuse_overwrite(out, force)
        if out.is_dir():
            raise DsdError(f"{out} is a folder; --out names the classifier file (.safetensors)")
        if not out.parent.is_dir():
            raise DsdError(f"output folder does not exist: {out.parent}")
        dev = setup_device("cpu", threads)
        epochs_text = f"{epochs} epoch{'s' if epochs != 1 else ''}"
        tell(f"training the digits classifier on the digits train split, {epochs_text}, seed {seed}, "
             f"on {compute_label(dev)}")
        start = time.time()
        with progress_bar() as bar:
            task = bar.add_task("train-classifier", total=None)
            model, acc = train(epochs=epochs, seed=seed,
                               on_step=lambda done, total: bar.update(task, completed=done, total=total))
        recipe = {"command": f"dsd train-classifier --out {out.name} --epochs {epochs} --seed {seed}",
                  "epochs": epochs, "seed": seed, "train_split": "digits:train", "test_split": "digits:test"}
        save_classifier(out, model, acc, recipe)
        tell(f"wrote {out}: held-out test accuracy {acc:.4f} ({time.time() - start:.0f} s)")
