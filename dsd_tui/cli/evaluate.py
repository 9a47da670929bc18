"""`dsd eval`: score samples (an npz, a folder, or a model sampled on the spot) against real images.

With `--json -` stdout holds the JSON object alone; the header, table and notes go to stderr."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from dsd_core.atomic import atomic_write_bytes
from dsd_core.checkpoint import load_model
from dsd_core.checks import check_seed
from dsd_core.classes import class_ids, class_names_of
from dsd_core.errors import DsdError, OptionError
from dsd_core.evaluate import (
    MIN_SAMPLES,
    across_seeds,
    check_features,
    check_samples,
    default_features,
    default_reference,
    evaluate,
    get_reference,
    per_class_accuracy,
    read_samples,
    small_n_message,
)
from dsd_core.features import FEATURE_NAMES, get_extractor
from dsd_core.guidance import null_class, resolve
from dsd_core.images import to_uint8
from dsd_core.limits import MAX_BATCH, MAX_NUM, MAX_SEED, at_most, check_batch, check_held
from dsd_core.nfe import NFECounter
from dsd_core.sampling import sample_batches
from dsd_core.solvers_plan import SAMPLERS, check_sampler, distilled_note
from dsd_core.timesteps import ddim_timesteps

from .common import (
    DeviceOption,
    ThreadsOption,
    compute_label,
    console,
    err_console,
    phase,
    progress_bar,
    refuse_overwrite,
    setup_device,
    user_errors,
)

METRICS = ("fd", "precision", "recall", "density", "coverage")
SE_NOTE = ("± after FD: its standard error from drawing n samples (delete-a-group jackknife over 20 groups of the "
           "samples, the real images held fixed)")


def _cell(scores: dict, metric: str) -> str:
    value = f"{scores[metric]:.4f}"
    return f"{value} ± {scores['fd_se']:.3g}" if metric == "fd" and "fd_se" in scores else value


def _table(result: dict) -> Table:
    floor = result["floor"]
    table = Table(title=f"{result['n']} samples vs {result['n_reference']} real ({result['reference']}, "
                        f"{result['features']} features)")
    table.add_column("metric")
    table.add_column(f"samples (n={result['n']})", justify="right")
    table.add_column(f"real floor (n={floor['n']})", justify="right")
    for m in METRICS:
        table.add_row(m, _cell(result, m), _cell(floor, m))
    if result.get("fd_at_floor_n") is not None:
        table.add_row(f"fd, first {floor['n']} samples", f"{result['fd_at_floor_n']:.4f}", f"{floor['fd']:.4f}")
    return table


def eval_command(
    samples: Path = typer.Argument(None, help="An .npz (arr_0, N×H×W×C uint8) or a folder of images."),
    model: str = typer.Option(None, "--model", "-m", help="Sample this model instead (name or checkpoint)."),
    steps: int = typer.Option(None, "--steps", "-s", help="With --model: sampler steps (default: distilled, else 64)."),
    sampler: str = typer.Option(None, "--sampler",
                                help=f"With --model: {'|'.join(SAMPLERS)} (default ddim; one network evaluation per "
                                     "step each)."),
    num: int = typer.Option(1000, "--num", "-n", help="With --model: number of samples."),
    seed: int = typer.Option(0, "--seed", help="With --model: noise seed."),
    seeds: int = typer.Option(1, "--seeds", help="With --model: repeat with seeds SEED…SEED+K−1; report mean ± sd."),
    batch: int = typer.Option(256, "--batch", help="With --model: images per network call."),
    reference: str = typer.Option(None, "--reference",
                                  help="digits, emoji16, emoji (train split; floor: test split) or real images (.npz "
                                       "or folder). Default: the model's data, else the data set of the samples' "
                                       "image size."),
    features: str = typer.Option(None, "--features",
                                 help=f"{'|'.join(FEATURE_NAMES)}. Default: the reference's data set (for real images, "
                                      "the one of their size)."),
    inception: Path = typer.Option(None, "--inception", help="FID Inception weights file (for --features inception)."),
    class_spec: str = typer.Option(None, "--class", "-c",
                                   help="With a conditional --model: a class id or name, all (cycling, default), "
                                        "data (the proportions of the --reference's labels: digits, emoji16, "
                                        "emoji) or none."),
    guidance: float = typer.Option(None, "--guidance", "-w", help="With a conditional --model: guidance w."),
    json_out: str = typer.Option(None, "--json",
                                 help="Also write the result as one JSON object to this file ('-': stdout, which "
                                      "then holds the JSON alone; the table goes to stderr)."),
    force: bool = typer.Option(False, "--force", help="Replace the --json file if it exists."),
    device: str = DeviceOption,
    threads: int = ThreadsOption,
) -> None:
    """Fréchet distance (± its standard error), precision/recall and density/coverage of samples, beside the
    real-data floor."""
    with user_errors():
        sampler = check_sampler(sampler)
        if (samples is None) == (model is None):
            raise DsdError("give either SAMPLES (an .npz or a folder) or --model M [--steps N --num K]")
        if json_out and json_out != "-":  # before the work, not after it
            _check_json_out(Path(json_out), force)
        if model is not None:
            at_most(MAX_NUM, "images", num=num)
            at_most(MAX_BATCH, "images per batch", batch=batch)
            check_seed(seed=seed)
            if seed + seeds - 1 > MAX_SEED:  # the last seed of the range too
                raise OptionError("{seeds} {n} from {seed} {first} run past the largest seed, {most}", n=seeds,
                                  first=seed, most=MAX_SEED)
        out = err_console if json_out == "-" else console
        dev = setup_device(device, threads)
        extractor = get_extractor(features, inception, dev) if features else None  # a bad one fails before any work
        if model is None:
            images = read_samples(samples)
            shape, data = images.shape[1:], None
        else:
            loaded = load_model(model, dev)
            cfg = loaded.model.config
            shape = (cfg.image_size, cfg.image_size, cfg.in_channels)
            data = loaded.meta.get("provenance", {}).get("data")
        ref = get_reference(reference or default_reference(shape, data))
        if extractor is None:  # the classifier of the reference's data set (for real images: of their size)
            extractor = get_extractor(default_features(ref), inception, dev)
        check_features(extractor, ref)
        if model is None:
            check_samples(images, ref)
            out.print(f"evaluating {len(images)} samples from {escape(str(samples))} against {escape(ref.name)} "
                      f"({extractor.name} features) on {compute_label(dev)}", highlight=False)
            result = {"samples": str(samples), "steps": None, "sampler": None, "nfe": None,
                      **evaluate(images, ref, extractor, phase)}
        else:
            result = _eval_model(model, loaded, steps, sampler, num, seed, seeds, batch, ref, extractor, class_spec,
                                 guidance, dev, out)
        _report(result, out)
        if json_out == "-":
            print(json.dumps(result))
        elif json_out:
            atomic_write_bytes(json_out, (json.dumps(result, indent=2) + "\n").encode())


def _eval_model(model, loaded, steps, sampler, num, seed, seeds, batch, ref, extractor, class_spec, guidance, dev,
                out) -> dict:
    """Sample `num` images per seed (one bar) from the `loaded` model, then score each seed's images."""
    steps = steps if steps is not None else (loaded.distilled_steps or 64)
    ddim_timesteps(steps, loaded.schedule.num_timesteps)  # a bad step count fails here, before any sampling
    if num < MIN_SAMPLES:
        raise DsdError(f"--num must be at least {MIN_SAMPLES} to evaluate, got {num}")
    if seeds < 1:
        raise DsdError(f"--seeds must be at least 1, got {seeds}")
    if batch < 1:
        raise DsdError(f"--batch must be at least 1, got {batch}")
    cfg = loaded.model.config
    shape = (cfg.image_size, cfg.image_size, cfg.in_channels)
    if shape != ref.images.shape[1:]:
        raise DsdError(f"the model makes {shape} images but the reference {ref.name} is {ref.images.shape[1:]}")
    image_bytes = cfg.image_size * cfg.image_size * cfg.in_channels
    check_batch(min(batch, num), image_bytes)
    check_held(num * seeds, image_bytes, why="held for scoring (--num × --seeds)")
    names = class_names_of(loaded.meta.get("provenance", {}).get("data"))
    data_mix = class_spec is not None and class_spec.strip().lower() == "data"
    classes, w = resolve(loaded.model, loaded.guidance, None if data_mix else class_spec, guidance, num, names)
    if data_mix:
        classes = _data_mix(loaded, ref, num, names)
    said = small_n_message(num, extractor.dim)
    if said:  # before sampling, not after
        warnings.warn(said, UserWarning, stacklevel=1)
    drawn_from = f"seed {seed}" if seeds == 1 else f"{seeds} seeds {seed}…{seed + seeds - 1}"
    note = distilled_note(str(model), loaded.distilled_steps, sampler)
    if note:
        out.print(f"note: {escape(note)}", highlight=False)
    mix = None if classes is None or class_spec == "none" else _mix(classes, null_class(loaded.model))
    if data_mix:
        label = list(names) if names and len(names) == len(mix) else range(len(mix))
        out.print(f"classes in the proportions of {escape(ref.name)}'s labels: "
                  + ", ".join(f"{escape(str(label[k]))}: {n}" for k, n in enumerate(mix)), highlight=False)
    out.print(f"evaluating {escape(str(model))} at {steps} steps of {sampler}: {num} samples ({drawn_from}) against "
              f"{escape(ref.name)} ({extractor.name} features) on {compute_label(dev)}", highlight=False)
    counter = NFECounter()
    start = time.perf_counter()
    drawn = []
    with progress_bar() as bar:
        task = bar.add_task(f"sample {steps} steps", total=num * seeds)
        for s in range(seed, seed + seeds):  # each batch to uint8 as it comes: a quarter of float32's memory
            images = []
            for x in sample_batches(loaded, steps, num, s, batch, dev, counter=counter, classes=classes, guidance=w,
                                    sampler=sampler):
                images.append(to_uint8(x))
                bar.advance(task, len(x))
            drawn.append(np.concatenate(images))
    info = {"model": model, "steps": steps, "sampler": sampler, "seed": seed, "nfe": counter.per_sample(num * seeds),
            "sample_seconds": round(time.perf_counter() - start, 3)}
    runs, accuracy = [], []
    for images in drawn:
        runs.append(evaluate(images, ref, extractor, phase, warn=False))
        if classes is not None and hasattr(extractor, "classify") and class_spec != "none":
            accuracy.append(per_class_accuracy(extractor.classify(images)[1], classes, null_class(loaded.model)))
    if classes is not None:
        info.update(classes="data" if data_mix else class_spec or "all", guidance=w)
        if mix is not None:
            info["class_mix"] = mix
    result = {**info, **runs[0]}
    if accuracy:
        result["class_accuracy"] = accuracy[0]
    if seeds > 1:
        result["seeds"] = seeds
        result["across_seeds"] = across_seeds(runs)
    return result


def _mix(classes: np.ndarray, num_classes: int) -> list[int]:
    """How many samples each class is asked for (the null class aside): the class mix the scores judge."""
    return np.bincount(classes, minlength=num_classes + 1)[:num_classes].tolist()


def _data_mix(loaded, ref, num: int, names) -> np.ndarray:
    """`--class data`: ids in the proportions of the reference's labels, so that FD does not count a class mix
    unlike the reference's against the model; one-line errors where the reference has no labels or not the
    model's number of classes (an unconditional model: `class_ids` says so)."""
    k = null_class(loaded.model)
    if k is not None and ref.label_counts is None:
        raise OptionError("{class} data needs labelled reference images and {name} has no labels; choose "
                          "{reference} digits, emoji16 or emoji", name=ref.name, field="class")
    if k is not None and len(ref.label_counts) != k:
        raise OptionError("{class} data: the reference {name} has {n} classes but this model has {k}",
                          name=ref.name, n=len(ref.label_counts), k=k)
    return class_ids("data", num, k, names, ref.label_counts)


def _check_json_out(path: Path, force: bool) -> None:
    """--json FILE: an existing file is replaced only with --force, and FILE's folder must exist."""
    if path.is_dir():
        raise DsdError(f"--json {path} is a folder; name the file to write")
    refuse_overwrite(path, force)
    if not path.parent.is_dir():
        raise DsdError(f"output folder does not exist: {path.parent}")


def _report(result: dict, out) -> None:
    """The table and its notes, on `out` (stderr when stdout carries the JSON)."""
    out.print(_table(result))
    out.print(SE_NOTE, highlight=False)
    if "across_seeds" in result:
        spread, n, first = result["across_seeds"], result["n"], result["seed"]
        out.print(f"over {result['seeds']} noise seeds ({first}…{first + result['seeds'] - 1}), n = {n} each: "
                  + ", ".join(f"{m} {spread[m]['mean']:.4g} ± {spread[m]['sd']:.2g}" for m in METRICS))
    if result.get("nfe") is not None:
        out.print(f"steps {result['steps']} ({result['sampler']}), NFE per sample {result['nfe']:g}")
    if "class_accuracy" in result:
        acc = result["class_accuracy"]
        out.print(f"guidance {result['guidance']:g}: the classifier agrees with the requested class for "
                  f"{100 * acc['accuracy']:.1f} % of samples (per class: "
                  + ", ".join(f"{c}: {100 * a:.0f} %" for c, a in acc["per_class"].items()) + ")")
