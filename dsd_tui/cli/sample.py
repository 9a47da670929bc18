"""`dsd sample`: draw images with DDIM (or DPM-Solver++ 2M/3M, UniPC: `--sampler`) from a checkpoint, a built-in
model or an exported `.onnx` sampler.

An `.onnx` model runs on onnxruntime and never imports torch; `--backend ort` exports a checkpoint to a cache
on first use. The backends are in `backends.py`, the `--watch` loop in `watch.py`.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from dsd_core.checks import check_seed
from dsd_core.errors import DsdError
from dsd_core.images import check_output_size, check_writable, output_kind, write_sample_batches
from dsd_core.limits import MAX_BATCH, MAX_NUM, at_most, check_batch
from dsd_core.solvers_plan import LABEL, SAMPLERS, check_sampler

from .backends import Drawer, ort_drawer, torch_drawer
from .common import DeviceOption, ForceOption, ThreadsOption, progress_bar, refuse_overwrite, tell, user_errors
from .watch import watch as watch_loop

BACKENDS = ("torch", "ort")


def sample(
    out: Path = typer.Argument(..., help="OUT.png (a grid), OUT.npz (arr_0: N×H×W×C uint8) or a folder."),
    model: str = typer.Option(None, "--model", "-m",
                              help="Built-in name, checkpoint path or exported .onnx sampler (default: "
                                   "digits-v-dsdN for --steps N if shipped, else digits-v; digits-v-dsd8 without "
                                   "--steps)."),
    steps: int = typer.Option(None, "--steps", "-s",
                              help="Sampler steps (default: the model's distilled count, else 64)."),
    num: int = typer.Option(64, "--num", "-n", help="Number of images."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial noise (numpy PCG64)."),
    batch: int = typer.Option(256, "--batch", help="Images per network call (does not change the images)."),
    sampler: str = typer.Option(None, "--sampler",
                                help=f"{'|'.join(SAMPLERS)}: DDIM (default; what distilled models are made for), "
                                     "DPM-Solver++ 2M/3M or UniPC, one network evaluation per step each."),
    spacing: str = typer.Option(None, "--spacing", help="Timestep grid: trailing (default) or leading."),
    clip: bool = typer.Option(None, "--clip/--no-clip",
                              help="Clip the x0 estimate to [-1, 1] at each step (default: on)."),
    backend: str = typer.Option("torch", "--backend",
                                help="torch, or ort: onnxruntime, exporting the model to a cache on first use "
                                     "(an .onnx model always runs on onnxruntime)."),
    class_spec: str = typer.Option(None, "--class", "-c",
                                   help="Conditional models: a class id, all (ids cycle, the default) or none."),
    guidance: float = typer.Option(None, "--guidance", "-w",
                                   help="Classifier-free guidance w: uncond + w·(cond − uncond) (default: the scale "
                                        "the model was distilled with, else 1)."),
    watch: bool = typer.Option(False, "--watch", help="Desktop sampler: after OUT is written, each key press "
                                                      "writes new images (the next seed) to OUT; q quits."),
    force: bool = ForceOption,
    device: str = DeviceOption,
    threads: int = ThreadsOption,
) -> None:
    """Sample NUM images with a deterministic sampler (DDIM by default) and write them to OUT."""
    with user_errors():
        check_sampler(sampler)
        if num < 1:
            raise DsdError(f"--num must be at least 1, got {num}")
        if batch < 1:
            raise DsdError(f"--batch must be at least 1, got {batch}")
        at_most(MAX_NUM, "images", num=num)
        at_most(MAX_BATCH, "images per batch", batch=batch)
        check_seed(seed=seed)
        if backend not in BACKENDS:
            raise DsdError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        output_kind(out)
        check_writable(out)
        refuse_overwrite(out, force)
        is_onnx = model is not None and Path(model).suffix.lower() == ".onnx"
        if is_onnx or backend == "ort":
            drawer = ort_drawer(model, steps, spacing, clip, device, threads, min(batch, num), class_spec, guidance,
                                sampler)
        else:
            drawer = torch_drawer(model, steps, spacing or "trailing", True if clip is None else clip, device, threads,
                                  class_spec, guidance, check_sampler(sampler))
        check_batch(min(batch, num), drawer.shape[0] * drawer.shape[1] * drawer.shape[2])  # before sampling
        check_output_size(out, num, drawer.shape)  # a grid holds all its images

        def draw_and_write(seed: int) -> None:
            write(drawer, out, num, seed, batch)

        draw_and_write(seed)
        if watch:
            watch_loop(draw_and_write, seed)


def write(drawer: Drawer, out: Path, num: int, seed: int, batch: int) -> None:
    """Draw `num` images with a progress bar, writing each batch to OUT as it comes (all at once for a grid), and
    say how long the sampling took."""
    spent = [0.0]

    def timed(batches):
        """The sampler's batches, timing the sampling alone (not the writing between batches)."""
        while True:
            start = time.perf_counter()
            images = next(batches, None)
            spent[0] += time.perf_counter() - start
            if images is None:
                return
            yield images

    with progress_bar() as bar:
        task = bar.add_task(f"sample {drawer.steps} steps", total=num)
        path = write_sample_batches(timed(drawer.batches(num, seed, batch)), out, num, lambda n: bar.advance(task, n))
    elapsed = spent[0]
    tell(
        f"wrote {num} images (model {drawer.model}, {drawer.steps} steps of {LABEL[drawer.sampler]}, seed {seed}) to "
        f"{path} — "
        f"{elapsed:.2f} s, {1000 * elapsed / num:.2f} ms/image on {drawer.where}"
    )
