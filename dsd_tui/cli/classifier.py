"""`dsd train-classifier`: the classifier of a shipped data set whose features judge samples of it."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import typer

from dsd_core.classifier import SPECS, get_spec, save_classifier, test_accuracies
from dsd_core.classifier import train_classifier as train
from dsd_core.errors import DsdError

from .common import ForceOption, compute_label, progress_bar, refuse_overwrite, setup_device, tell, user_errors


def train_classifier(
    out: Path = typer.Option(..., "--out", help="Where to write the classifier (.safetensors)."),
    data: str = typer.Option("digits", "--data", help=f"{'|'.join(SPECS)}: the data set to classify."),
    epochs: int = typer.Option(None, "--epochs", help="Default: digits 40, emoji16 20, emoji 16."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = ForceOption,
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch."),
) -> None:
    """Train a data set's classifier on its train split and record its held-out test accuracy (every head)."""
    with user_errors():
        spec = get_spec(data)
        epochs = spec.epochs if epochs is None else epochs
        if epochs < 1:
            raise DsdError(f"--epochs must be at least 1, got {epochs}")
        refuse_overwrite(out, force)
        if out.is_dir():
            raise DsdError(f"{out} is a folder; --out names the classifier file (.safetensors)")
        if not out.parent.is_dir():
            raise DsdError(f"output folder does not exist: {out.parent}")
        dev = setup_device("cpu", threads)
        epochs_text = f"{epochs} epoch{'s' if epochs != 1 else ''}"
        tell(f"training the {data} classifier ({' and '.join(spec.heads)}) on the {data} train split, {epochs_text}, "
             f"seed {seed}, on {compute_label(dev)}")
        start = time.time()
        with progress_bar() as bar:
            task = bar.add_task("train-classifier", total=None)
            model, _ = train(epochs=epochs, seed=seed, data=data,
                             on_step=lambda done, total: bar.update(task, completed=done, total=total))
        accuracies = test_accuracies(model, data)
        data_flag = "" if data == "digits" else f" --data {data}"
        recipe = {"command": f"dsd train-classifier{data_flag} --out {out.name} --epochs {epochs} --seed {seed}",
                  "epochs": epochs, "seed": seed, "train_split": f"{data}:train", "test_split": f"{data}:test",
                  "seconds": round(time.time() - start, 1), "threads": torch.get_num_threads()}
        save_classifier(out, model, accuracies, recipe, data)
        said = ", ".join(f"{name} {acc:.4f}" for name, acc in accuracies.items())
        tell(f"wrote {out}: held-out test accuracy {said} ({time.time() - start:.0f} s)")
