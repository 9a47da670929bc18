"""`dsd distill`: distil a model into fewer sampling steps with DSD, or with the baselines TSD, PD, DSD→PD."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import typer
from rich.progress import TextColumn

from dsd_core import defaults
from dsd_core import distributed as ddp
from dsd_core.atomic import atomic_write_bytes
from dsd_core.checks import at_least, config_from_file, fields_of
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.methods import ema_short_run_message, nfe_text
from dsd_core.distill.runner import Distiller, load_base
from dsd_core.errors import DsdError
from dsd_core.interrupt import stop_at_update_boundary
from dsd_core.run_lock import refuse_if_in_use
from dsd_core.runs import RunPaths, folders_made_on_start, read_run_config

from .common import (
    DeviceOption,
    ThreadsOption,
    bar_phases,
    compute_label,
    config_from_options,
    phase,
    progress_bar,
    refuse_overwrite,
    run_threads,
    setup_device,
    tell,
    user_errors,
)

D = DistillConfig()


def distill(
    model: str = typer.Option(defaults.DISTILL_MODEL, "--model", "-m",
                              help="Model to distil: built-in name or checkpoint."),
    method: str = typer.Option(D.method, "--method",
                               help="dsd, tsd (frozen teacher), pd (progressive distillation, needs data), dsd+pd "
                                    "or dsd-anchor (DSD + a share of samples fitting the starting model's cached "
                                    "trajectories)."),
    schedule: str = typer.Option(D.schedule, "--schedule", help="naive, iterative, gradual-linear or gradual-exp."),
    n_from: int = typer.Option(D.n_from, "--from", help="Finest grid: the step count the model is good at."),
    n_to: int = typer.Option(D.n_to, "--to", help="Target sampling steps."),
    updates: int = typer.Option(D.updates, "--updates", help="Parameter updates in all."),
    batch: int = typer.Option(D.batch, "--batch", help="Trajectories in flight (one pair each per update)."),
    lr: float = typer.Option(D.lr, "--lr", help="Adam learning rate (DSD is sensitive to it; see docs/benchmarks.md)."),
    pd_lr: float = typer.Option(D.pd_lr, "--pd-lr", help="Learning rate of PD stages (each round resets Adam)."),
    lr_decay: str = typer.Option(D.lr_decay, "--lr-decay",
                                 help="constant, or cosine: each stage's learning rate falls to zero by its end."),
    pd_stages: int = typer.Option(D.pd_stages, "--pd-stages",
                                  help="dsd+pd: how many final stages use PD (default: half, rounded down)."),
    data: str = typer.Option(D.data, "--data",
                             help="PD's training data: digits or an image folder (default: the model's own)."),
    weight: str = typer.Option(D.weight, "--weight", help="Loss weight: authors (max(logSNR,1)), snr-trunc, constant."),
    ema: float = typer.Option(D.ema_decay, "--ema", help="EMA decay; the EMA weights are saved."),
    ema_teacher: bool = typer.Option(D.ema_teacher, "--ema-teacher/--self-teacher",
                                     help="Teacher steps use the EMA weights, or the live weights (the authors')."),
    lockstep: bool = typer.Option(D.lockstep, "--lockstep", help="All trajectories at the same pair (the authors')."),
    teacher_first: str = typer.Option(D.teacher_first, "--teacher-first",
                                      help="DSD stages whose teacher takes the first half-step too (3 NFE per "
                                           "trajectory): auto (last for dsd-stage to 2 steps, else off), off, last "
                                           "or all; "
                                           "against the 2-step drift, docs/benchmarks.md."),
    teacher_chunks: int = typer.Option(D.teacher_chunks, "--teacher-chunks",
                                       help="Run DSD's teacher on this many slices of the batch: less peak memory, "
                                            "more time (see docs/benchmarks.md)."),
    seed: int = typer.Option(D.seed, "--seed"),
    run_dir: Path = typer.Option(None, "--run-dir", help="Run folder (default: runs/METHOD-SCHEDULE-FROMtoTO-TIME)."),
    resume: Path = typer.Option(None, "--resume", help="Continue the run in this folder where it stopped."),
    out: Path = typer.Option(None, "--out", help="Also copy the distilled checkpoint here (a folder with "
                                                 "--save-format diffusers)."),
    save_format: str = typer.Option("dsd", "--save-format",
                                    help="--out as a dsd checkpoint, or as a diffusers DDIMPipeline folder "
                                         "(diffusers models)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    sample_every: int = typer.Option(D.sample_every, "--sample-every", help="Updates between preview grids."),
    checkpoint_every: int = typer.Option(D.checkpoint_every, "--checkpoint-every"),
    anchor_share: float = typer.Option(D.anchor_share, "--anchor-share",
                                       help="dsd-anchor: anchored samples per update, as a share of --batch."),
    anchor_cache: int = typer.Option(D.anchor_cache, "--anchor-cache",
                                     help="dsd-anchor: trajectories of the starting model cached at the start."),
    quality_every: int = typer.Option(D.quality_every, "--quality-every",
                                      help="Updates between agreement checks: the EMA model against the starting "
                                           "model's fine-grid samples of fixed noises (MSE, PSNR); 0: none."),
    quality_num: int = typer.Option(D.quality_num, "--quality-num", help="Fixed noises of the agreement check."),
    quality_fd: int = typer.Option(D.quality_fd, "--quality-fd",
                                   help="Also score this many samples with the digits classifier (FD, precision, "
                                        "recall) at each agreement check; digits models only; 0: none."),
    keep: str = typer.Option(D.keep, "--keep",
                             help="model.safetensors: best (the snapshot that agreed best with the starting model, "
                                  "kept as model-best-Nsteps.safetensors), last (the final EMA), or auto: best for "
                                  "dsd and dsd-anchor, which drift with budget, last for dsd-stage, tsd, pd and "
                                  "dsd+pd."),
    stop_when_worse: int = typer.Option(D.stop_when_worse, "--stop-when-worse",
                                        help="End a stage after this many agreement checks without a better "
                                             "model, and go on from the stage's best snapshot (where the run "
                                             "keeps its best: --keep best, or auto for dsd); 0: full stages."),
    guidance: float = typer.Option(D.guidance, "--guidance", "-w",
                                   help="Classifier-free guidance w of a conditional model, in student and teacher "
                                        "(uncond + w·(cond − uncond); 4 NFE per update unless w is 0 or 1)."),
    amp: str = typer.Option(D.amp, "--amp", help="Mixed precision of the network: off, bf16 or fp16 (CUDA)."),
    compile_net: bool = typer.Option(D.compile, "--compile", help="torch.compile the network (slow first update)."),
    nproc: int = typer.Option(1, "--nproc", help="Data-parallel processes (torchrun; one GPU each, or gloo on "
                                                 "the CPU); --batch is per process."),
    device: str = DeviceOption,
    threads: int = ThreadsOption,
) -> None:
    """Distil a model so that it samples well in --to steps; writes RUN_DIR/model.safetensors."""
    options = dict(locals())
    with user_errors():
        at_least(1, nproc=nproc)
        saved = read_run_config(resume, "distill") if resume is not None else None
        if saved is None:  # the settings, checked before any process starts and any folder is made
            cfg = config_from_options(DistillConfig, options, OPTION_OF_FIELD)
        else:
            cfg = config_from_file(DistillConfig, saved["distill"], RunPaths(resume).config_path, "distill")
        if nproc > 1 and "WORLD_SIZE" not in os.environ:
            check_out(out, save_format, force)  # once here, not once per process
            refuse_if_in_use(resume or run_dir)
            raise typer.Exit(launch(nproc, run_dir, resume, method, schedule, n_from, n_to))
        dev = setup_device(device, run_threads(threads, saved))
        world, dev = ddp.setup(dev)
        if saved is not None:  # the run repairs its folder once it holds the lock (ResumableLoop.owning)
            model, run_dir = saved["base_model"], resume
        else:
            if run_dir is None and world.active:
                raise DsdError("a data-parallel run needs --run-dir (every process must name the same folder)")
            if run_dir is None:
                run_dir = Path("runs") / defaults.run_folder_name(method, schedule, n_from, n_to)
            if (run_dir / "config.json").exists():
                raise DsdError(f"{run_dir} already holds a run; --resume it or choose another --run-dir")
            if Path(model).exists():
                model = str(Path(model).resolve())
        check_out(out, save_format, force)
        if world.main:
            refuse_if_in_use(run_dir)  # at once, not after loading the model; the run takes the lock itself
        base, name, sha = load_base(model, dev)
        c = base.model.config
        with fields_of(RunPaths(resume).config_path, "distill") if saved else contextlib.nullcontext():
            cfg.check_batches(c.in_channels * c.image_size**2)
            cfg.stages(base.schedule.num_timesteps)  # the step counts; the run computes them again
        if save_format == "diffusers":
            from dsd_core.diffusers_io import check_diffusers_model

            check_diffusers_model(base)
        with folders_made_on_start():  # the run's own checks (stages, PD data, --quality-fd …) come first
            distiller = Distiller(base, cfg, run_dir, dev, name, sha, world)
        if not world.main:
            distiller.run_loop(resume=resume is not None)
            ddp.teardown(world)
            return
        said = ema_short_run_message(cfg.updates, cfg.ema_decay) if saved is None else None
        if said:
            warnings.warn(said, UserWarning, stacklevel=1)
        stages = " → ".join(f"{s.steps} {m}" for s, m in zip(distiller.stages, distiller.methods))
        nfe = nfe_text(cfg.method, distiller.methods, distiller.guided_cost, cfg.first_rule)
        tell(f"{cfg.method} {cfg.schedule}: grids {stages} (then {cfg.n_to} steps), {cfg.updates} updates "
             f"of batch {cfg.batch} ({nfe}), on {compute_label(dev)}"
             + (f" × {world.size} processes" if world.active else "") + f"; run folder {run_dir}")
        with progress_bar(TextColumn("{task.fields[stage]}"), TextColumn("{task.fields[loss]}"),
                          TextColumn("{task.fields[quality]}")) as bar:
            # no loss (and no agreement) before the first update
            task = bar.add_task(cfg.method, total=cfg.updates, loss="", stage="", quality="")

            def show(update: int, event: dict) -> None:
                loss = event.get("loss")
                said = distiller.last_quality
                bar.update(task, completed=update, stage=f"grid {event['stage']}",
                           loss="loss skipped (non-finite)" if loss is None else f"loss {loss:.4g}",
                           quality="" if said is None else f"agreement {said[1]:.1f} dB at {said[0]} steps"
                           + ("" if said[2] is None else f", FD {said[2]:.2f}"))

            with stop_at_update_boundary(not world.active):
                path = distiller.run_loop(show, resume=resume is not None, phase=bar_phases(bar, task))
        ddp.teardown(world)
        if out is not None and save_format == "diffusers":
            from dsd_core.checkpoint import load_model
            from dsd_core.diffusers_io import save_diffusers

            with phase(f"writing the diffusers pipeline {out}"):
                out = save_diffusers(load_model(path), out, cfg.n_to, replace=force)
            tell(f"wrote the diffusers pipeline {out} (DDIMScheduler, trailing spacing, {cfg.n_to} steps)")
        elif out is not None:
            atomic_write_bytes(out, path.read_bytes())
        ran = (f"{distiller.updates_run} of {cfg.updates} updates: stages ended when their agreement stopped "
               "improving, " if distiller.updates_run < cfg.updates else "")
        tell(f"wrote {path} ({ran}{distiller.elapsed:.0f} s, {distiller.skipped} skipped updates)")


# Options that are not part of the run's config (where it goes, what it starts from, how it runs), and the
# config fields whose option has another name; every other option is the config field of its own name.
NOT_CONFIG = {"model", "run_dir", "resume", "out", "save_format", "force", "nproc", "device", "threads"}
OPTION_OF_FIELD = {"ema_decay": "ema", "compile": "compile_net"}


def check_out(out: Path | None, save_format: str, force: bool) -> None:
    """--out and --save-format, before any work (and before other processes start): what a finished run
    could otherwise only find out when it writes."""
    if save_format not in ("dsd", "diffusers"):
        raise DsdError(f"unknown --save-format {save_format!r}; choose dsd or diffusers")
    if out is None:
        if save_format == "diffusers":
            raise DsdError("--save-format diffusers writes a pipeline folder: give it with --out FOLDER")
        return
    refuse_overwrite(out, force)
    if save_format == "diffusers":
        from dsd_core.diffusers_io import check_pipeline_folder

        check_pipeline_folder(out, replace=force)
    elif out.is_dir():
        raise DsdError(f"{out} is a folder; --out names the checkpoint file (a folder needs --save-format diffusers)")
    if not out.parent.is_dir():
        raise DsdError(f"output folder does not exist: {out.parent}")
    if not os.access(out.parent, os.W_OK):
        raise DsdError(f"cannot write to {out.parent}: permission denied")


def launch(nproc: int, run_dir: Path | None, resume: Path | None, method: str, schedule: str, n_from: int,
           n_to: int) -> int:
    """Run this same command under torchrun with `nproc` processes; their exit code is ours."""
    args = sys.argv[1:]
    for i, a in enumerate(args):  # drop --nproc K / --nproc=K
        if a == "--nproc":
            args = args[:i] + args[i + 2 :]
            break
        if a.startswith("--nproc="):
            args = args[:i] + args[i + 1 :]
            break
    if run_dir is None and resume is None:  # every rank must write (or not) into the same folder
        run_dir = Path("runs") / defaults.run_folder_name(method, schedule, n_from, n_to)
        args += ["--run-dir", str(run_dir)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "dsd_tui.cli", *args]
    tell(f"starting {nproc} processes: {' '.join(cmd[1:])}")
    return subprocess.call(cmd)
