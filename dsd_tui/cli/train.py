"""`dsd train`: standard denoising training of the built-in UNet on the digits or an image folder."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import typer
from rich.progress import TextColumn

from dsd_core.checks import at_least, config_from_file, fields_of
from dsd_core.data import load_dataset, load_labels
from dsd_core.errors import DsdError
from dsd_core.interrupt import stop_at_update_boundary
from dsd_core.limits import MAX_BLOCKS, MAX_WIDTH, at_most
from dsd_core.models import UNetConfig, count_parameters
from dsd_core.run_lock import refuse_if_in_use
from dsd_core.runs import RunPaths, read_run_config
from dsd_core.schedule import NoiseSchedule
from dsd_core.train import TrainConfig, Trainer, short_run_message

from .common import (
    DeviceOption,
    ThreadsOption,
    bar_phases,
    compute_label,
    config_from_options,
    progress_bar,
    run_threads,
    setup_device,
    tell,
    user_errors,
)


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip() != "")
    except ValueError:
        raise DsdError(f"--{name} must be comma-separated integers, got {text!r}") from None


# Options that are not part of TrainConfig (the data, the network's shape, where the run goes and how it runs),
# and the fields whose option has another name; every other option is the field of its own name.
NOT_CONFIG = {"data", "out", "channels", "mults", "res_blocks", "attention", "image_size", "resume", "device",
              "threads"}
OPTION_OF_FIELD = {"ema_decay": "ema", "compile": "compile_net"}


def train(
    data: str = typer.Option(None, "--data", help="'digits' (the shipped 8×8 digits) or a folder of images."),
    out: Path = typer.Option(None, "--out", help="Run folder: config, events, checkpoints, samples, model."),
    steps: int = typer.Option(TrainConfig.steps, "--steps", help="Optimizer steps."),
    batch: int = typer.Option(TrainConfig.batch, "--batch", help="Images per step."),
    lr: float = typer.Option(TrainConfig.lr, "--lr", help="Peak learning rate (AdamW, warm-up then cosine)."),
    seed: int = typer.Option(TrainConfig.seed, "--seed"),
    ema: float = typer.Option(TrainConfig.ema_decay, "--ema", help="EMA decay of the saved weights."),
    prediction: str = typer.Option(TrainConfig.prediction, "--prediction", help="eps, x0 or v."),
    schedule: str = typer.Option(TrainConfig.schedule, "--schedule", help="Noise schedule: linear or cosine."),
    channels: int = typer.Option(UNetConfig.base_channels, "--channels", help="UNet base channels."),
    mults: str = typer.Option("1,2,2", "--mults", help="Channel multipliers, one per resolution."),
    res_blocks: int = typer.Option(UNetConfig.num_res_blocks, "--res-blocks", help="ResBlocks per resolution."),
    attention: str = typer.Option("2", "--attention", help="Resolution levels with self-attention, e.g. '2' or ''."),
    image_size: int = typer.Option(None, "--image-size", help="Resize folder images to this size."),
    sample_every: int = typer.Option(TrainConfig.sample_every, "--sample-every", help="Steps between sample grids."),
    checkpoint_every: int = typer.Option(TrainConfig.checkpoint_every, "--checkpoint-every"),
    self_distill: bool = typer.Option(False, "--self-distill",
                                      help="Interleave DSD updates (own optimizer, --sd-lr-scale × lr) with training."),
    sd_every: int = typer.Option(TrainConfig.sd_every, "--sd-every", help="Training steps per DSD update."),
    sd_lr_scale: float = typer.Option(TrainConfig.sd_lr_scale, "--sd-lr-scale", help="DSD lr / training lr."),
    sd_steps: int = typer.Option(TrainConfig.sd_steps, "--sd-steps", help="Sampling steps DSD distils towards."),
    sd_batch: int = typer.Option(TrainConfig.sd_batch, "--sd-batch", help="DSD trajectories in flight."),
    conditional: bool = typer.Option(False, "--conditional",
                                     help="Class-conditional (digits labels) with a null class, for guidance."),
    label_dropout: float = typer.Option(TrainConfig.label_dropout, "--label-dropout",
                                        help="Share of labels replaced by the null class (conditional)."),
    amp: str = typer.Option(TrainConfig.amp, "--amp", help="Mixed precision of the network: off, bf16 or fp16 (CUDA)."),
    compile_net: bool = typer.Option(False, "--compile", help="torch.compile the network (slow first steps)."),
    resume: Path = typer.Option(None, "--resume", help="Continue the run in this folder where it stopped."),
    device: str = DeviceOption,
    threads: int = ThreadsOption,
) -> None:
    """Train a denoiser from scratch; the EMA weights end up in OUT/model.safetensors."""
    options = dict(locals())
    with user_errors():
        saved = read_run_config(resume, "train") if resume is not None else None
        dev = setup_device(device, run_threads(threads, saved))
        if saved is not None:
            data, out = saved["data_spec"], resume  # the run repairs its folder once it holds the lock
            path = RunPaths(resume).config_path
            cfg = config_from_file(TrainConfig, saved["train"], path, "train")
            model_cfg = UNetConfig.from_dict(saved["model_config"], f"{path}: model_config")
            with fields_of(path, "train"):  # what depends on the network, named as config.json's fields
                cfg.check_for(model_cfg, NoiseSchedule(cfg.schedule).num_timesteps)
        else:
            if data is None or out is None:
                raise DsdError("give --data and --out (or --resume RUN_DIR)")
            if (out / "config.json").exists():
                raise DsdError(f"{out} already holds a run; --resume it or choose another --out")
            cfg = config_from_options(TrainConfig, options, OPTION_OF_FIELD)
            at_least(1, channels=channels)  # the network's flags before the data are read (UNetConfig checks
            at_least(0, res_blocks=res_blocks)  # the rest once the data give the image size)
            at_most(MAX_WIDTH, "channels per layer", channels=channels)
            at_most(MAX_BLOCKS, "ResBlocks per resolution", res_blocks=res_blocks)
        refuse_if_in_use(out)  # at once, not after loading the data; the run takes the lock itself
        images, data_name = load_dataset(data, image_size)
        labels = load_labels(data) if cfg.conditional else None
        if resume is None:
            model_cfg = UNetConfig(image_size=images.shape[-1], in_channels=images.shape[1], base_channels=channels,
                                   channel_mults=_ints(mults, "mults"), num_res_blocks=res_blocks,
                                   attention_levels=_ints(attention, "attention"),
                                   num_classes=int(labels.max()) + 1 if labels is not None else None)
        trainer = Trainer(images, model_cfg, cfg, out, dev, data_name=data_name, data_spec=data, labels=labels)
        said = short_run_message(cfg) if resume is None else None  # a resumed run was warned when it started
        if said:
            warnings.warn(said, UserWarning, stacklevel=1)
        tell(
            f"training {count_parameters(trainer.model):,} parameters on {images.shape[0]} images "
            f"{tuple(images.shape[1:])} from {data_name}, {cfg.steps} steps, on {compute_label(dev)}"
            + (f"; a DSD update towards {cfg.sd_steps} steps every {cfg.sd_every} step(s)" if cfg.self_distill else "")
        )
        start = time.time()
        with progress_bar(TextColumn("{task.fields[loss]}")) as bar:
            task = bar.add_task("train", total=cfg.steps, loss="", completed=0)  # no loss before the first step
            with stop_at_update_boundary():
                path = trainer.run_loop(lambda step, loss: bar.update(task, completed=step, loss=f"loss {loss:.4f}"),
                                        resume=resume is not None, phase=bar_phases(bar, task))
        tell(f"wrote {path} ({time.time() - start:.0f} s)")
