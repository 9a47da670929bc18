"""`dsd sample`: draw images with DDIM from a checkpoint or a built-in model."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from dsd_core.checkpoint import default_model, load_model
from dsd_core.errors import DsdError
from dsd_core.images import check_writable, output_kind, to_uint8, write_samples
from dsd_core.sampling import sample as sample_images

from .common import DeviceOption, ThreadsOption, console, progress_bar, setup_device, user_errors


def sample(
    out: Path = typer.Argument(..., help="OUT.png (a grid), OUT.npz (arr_0: N×H×W×C uint8) or a folder."),
    model: str = typer.Option(None, "--model", "-m",
                              help="Built-in name or checkpoint path (default: digits-dsdN for --steps N if shipped, else digits)."),
    steps: int = typer.Option(None, "--steps", "-s", help="DDIM steps (default: the distilled count, else 64)."),
    num: int = typer.Option(64, "--num", "-n", help="Number of images."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial noise (numpy PCG64)."),
    batch: int = typer.Option(256, "--batch", help="Images per network call (does not change the images)."),
    spacing: str = typer.Option("trailing", "--spacing", help="Timestep grid: trailing or leading."),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="Clip the x0 estimate to [-1, 1] at each step."),
    device: str = DeviceOption,
    threads: int = ThreadsOption,
) -> None:
    """Sample NUM images with a deterministic DDIM sampler and write them to OUT."""
    with user_errors():
        if num < 1:
            raise DsdError(f"--num must be at least 1, got {num}")
        if batch < 1:
            raise DsdError(f"--batch must be at least 1, got {batch}")
        if seed < 0:
            raise DsdError(f"--seed must be non-negative, got {seed}")
        output_kind(out)
        check_writable(out)
        dev = setup_device(device, threads)
        model = model or default_model(steps)
        loaded = load_model(model, dev)
        steps = steps if steps is not None else (loaded.distilled_steps or 64)
        start = time.perf_counter()
        with progress_bar() as bar:
            task = bar.add_task(f"sample {steps} steps", total=num)
            images = sample_images(loaded, steps, num, seed, batch, dev, spacing, clip,
                                   on_batch=lambda n: bar.advance(task, n))
        elapsed = time.perf_counter() - start
        path = write_samples(to_uint8(images), out)
        console.print(
            f"wrote {num} images (model {model}, {steps} steps, seed {seed}) to {path} — "
            f"{elapsed:.2f} s, {1000 * elapsed / num:.2f} ms/image on {dev}"
        )
