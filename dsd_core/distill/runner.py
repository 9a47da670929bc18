"""A distillation run: stages from a step scheduler, the update of the chosen method at each stage, EMA,
events, previews and resumable checkpoints in a run directory.

Methods (one engine, so that comparisons share everything but the update):
- dsd: self-distillation on the model's own trajectories (a staggered pool); teacher = the EMA or the live model.
- tsd: the same update with a frozen copy of the starting model as teacher.
- pd: progressive distillation on training data; each stage is a round whose frozen teacher is the previous
  round's result (EMA weights), the student starting from it with a fresh optimizer at `pd_lr`.
- dsd+pd: DSD for the first stages, PD for the last `pd_stages` (default: half of them, rounded down).

Every random number comes from one seeded generator whose state is checkpointed together with the model, EMA,
optimizer, pool, histogram and counters, so on the CPU a run resumed after a kill ends bit-identical to an
uninterrupted one. A non-finite loss skips the update (no optimizer or EMA step), sends the affected
trajectories back to fresh noise and is logged; the weights that reach a checkpoint are always finite.

A class-conditional model is distilled with classifier-free guidance in both the student and the teacher
step (the authors'), each trajectory carrying its own class: 4 network evaluations per trajectory and update
for w ∉ {0, 1}. Under torchrun each rank owns a shard of the pool, gradients are averaged by DDP and the
histogram is gathered; rank 0 alone writes events, previews and checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import torch

from .. import __version__
from .. import defaults
from .. import distributed as ddp
from ..accel import Scaler, autocast_net, check_amp, maybe_compile
from ..checkpoint import (
    LoadedModel,
    file_sha256,
    learner_state,
    load_model,
    prefixed,
    read_state,
    resolve_model_path,
    restore_learner_state,
    save_model,
    save_tensors,
    unprefixed,
)
from ..data import load_dataset
from ..ema import EMA
from ..errors import DsdError
from ..guidance import check_guidance, guided_prediction, null_class
from ..images import to_uint8, write_samples
from ..interrupt import Interrupted, stop_requested
from ..optim import adamw
from ..runs import STATE_FILE, RunDir
from ..sampling import sample
from ..schedule import ddim_timesteps
from .dsd import WEIGHTS, PairResult, dsd_pair_loss, in_chunks
from .methods import METHODS, NFE_PER_SAMPLE, stage_methods  # noqa: F401  (METHODS re-exported)
from .pd import pd_loss
from .pool import TrajectoryPool, grid_pairs
from .stepping import Stage, StepHistogram, build_stages

MODEL_FILE = "model.safetensors"
MAX_NAN_STREAK = 20
PREVIEW = "sampling a preview grid"


@dataclass
class DistillConfig:
    method: str = defaults.DISTILL_METHOD
    schedule: str = defaults.DISTILL_SCHEDULE
    n_from: int = defaults.DISTILL_FROM
    n_to: int = defaults.DISTILL_TO
    updates: int = defaults.DISTILL_UPDATES
    batch: int = defaults.DISTILL_BATCH
    lr: float = defaults.DISTILL_LR
    pd_lr: float = 1e-4
    pd_stages: int = 0
    data: str = ""
    weight: str = "authors"
    ema_decay: float = 0.999
    ema_teacher: bool = True
    lockstep: bool = False
    teacher_chunks: int = 1  # DSD/TSD teacher on slices of the batch: lower peak memory, more time
    grad_clip: float = 1.0
    clip_x0: bool = True
    seed: int = defaults.DISTILL_SEED
    sample_every: int = 500
    checkpoint_every: int = 250
    histogram_every: int = 50
    guidance: float = 1.0  # classifier-free guidance w of a conditional model (1: plain conditional)
    amp: str = "off"  # off, bf16 or fp16: autocast of the network calls
    compile: bool = False  # torch.compile the network

    def __post_init__(self) -> None:
        check_amp(self.amp)
        if self.method not in METHODS:
            raise DsdError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.weight not in WEIGHTS:
            raise DsdError(f"unknown loss weight {self.weight!r}; choose one of {', '.join(WEIGHTS)}")
        for name in ("batch", "sample_every", "checkpoint_every", "histogram_every", "teacher_chunks"):
            if getattr(self, name) < 1:
                raise DsdError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.pd_lr > 0):
            raise DsdError(f"learning rates must be positive, got {self.lr} and {self.pd_lr}")
        if self.pd_stages < 0:
            raise DsdError(f"pd-stages must be at least 0, got {self.pd_stages}")
        if not 0 <= self.ema_decay < 1:
            raise DsdError(f"EMA decay must be in [0, 1), got {self.ema_decay}")


def training_data_spec(requested: str, base: LoadedModel) -> str:
    """PD's data: what the user named, else the data the base model's checkpoint says it was trained on."""
    if requested:
        return requested
    named = base.meta.get("provenance", {}).get("data", "")
    if named in ("digits", "digits:train"):
        return "digits"
    if named and Path(named).is_dir():
        return named
    raise DsdError("PD trains on the model's training data, which its checkpoint does not name: pass --data "
                   "(digits or an image folder)")


class Distiller:
    """One distillation run of a loaded model; `run_loop()` distils to the end, resuming if asked."""

    def __init__(self, base: LoadedModel, cfg: DistillConfig, run_dir: str | Path, device: torch.device,
                 base_name: str = "", base_sha256: str = "", world: ddp.World = ddp.SINGLE):
        self.cfg, self.device, self.world = cfg, device, world
        check_amp(cfg.amp, device)
        self.null = null_class(base.model)
        check_guidance(base.model, None, cfg.guidance)
        self.base_name, self.base_sha256 = base_name, base_sha256
        self.schedule, self.prediction = base.schedule, base.prediction
        self.stages: list[Stage] = build_stages(cfg.schedule, cfg.n_from, cfg.n_to, cfg.updates,
                                                base.schedule.num_timesteps)
        self.stage_ends = np.cumsum([s.updates for s in self.stages]).tolist()
        self.methods = stage_methods(cfg.method, len(self.stages), cfg.pd_stages)
        self.base_data = base.meta.get("provenance", {}).get("data", "")
        self.data_spec, self.data = "", None
        if world.active and "pd" in self.methods:
            raise DsdError("data-parallel runs (--nproc) support dsd and tsd, not PD stages")
        if self.null is not None and "pd" in self.methods:
            raise DsdError("PD of class-conditional models is not supported; use --method dsd or tsd")
        if "pd" in self.methods:
            self.data_spec = training_data_spec(cfg.data, base)
            self.data, _ = load_dataset(self.data_spec)
            c = base.model.config
            if tuple(self.data.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
                raise DsdError(f"the data {self.data_spec} are {tuple(self.data.shape[1:])} images but the model "
                               f"makes {(c.in_channels, c.image_size, c.image_size)}")
        self.run = RunDir(run_dir) if world.main else SilentRun(run_dir)
        torch.manual_seed(cfg.seed)
        self.model = base.model.to(device).train()
        self.ema = EMA(self.model, cfg.ema_decay, warmup=False)
        self.frozen_base = (copy.deepcopy(self.model).eval().requires_grad_(False)
                            if cfg.method == "tsd" else None)
        self.round_teacher: torch.nn.Module | None = None  # PD: the previous round's model, frozen
        self.student = maybe_compile(self.model, cfg.compile)
        if world.active:
            from torch.nn.parallel import DistributedDataParallel

            self.student = DistributedDataParallel(self.student, device_ids=[device] if device.type == "cuda" else None)
        self.scaler = Scaler(device, cfg.amp)
        self.opt = adamw(self.model.parameters(), lr=cfg.lr)
        self.params = list(self.model.parameters())  # walked once: the module tree costs ~1 ms per walk
        self.gen = torch.Generator().manual_seed(cfg.seed)
        c = self.model.config
        self.pool = TrajectoryPool(cfg.batch, (c.in_channels, c.image_size, c.image_size), self.gen, device,
                                   cfg.lockstep, num_classes=self.null, rank=world.rank, world=world.size)
        self.guided_cost = 2 if self.null is not None and cfg.guidance not in (0.0, 1.0) else 1
        self.pool_stage = -1
        self.histogram = StepHistogram(self.stages[0].steps, self.schedule.num_timesteps)
        self.update = 0
        self.nfe = {"updates": 0, "warmup": 0}
        self.skipped = 0
        self.nan_streak = 0
        self.elapsed = 0.0

    # -- what the run is ----------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {
            "command": "distill",
            "version": __version__,
            "threads": torch.get_num_threads(),  # a resume needs the same count to end bit-identical
            "base_model": self.base_name,
            "base_sha256": self.base_sha256,
            "distill": asdict(self.cfg),
            "data": self.data_spec,
            "stages": [{**asdict(s), "method": m} for s, m in zip(self.stages, self.methods)],
            "model_config": self.model.config.to_dict(),
        }

    def stage_index(self, update: int) -> int:
        return next(i for i, end in enumerate(self.stage_ends) if update < end)

    def teacher(self) -> Callable:
        if self.methods[max(self.pool_stage, 0)] == "pd":
            return self.round_teacher
        if self.frozen_base is not None:
            return self.frozen_base
        return self.ema.shadow if self.cfg.ema_teacher else self.model

    # -- checkpoints --------------------------------------------------------------------------------
    def save_state(self) -> Path:
        for p in self.model.parameters():
            if not torch.isfinite(p).all():
                raise DsdError("refusing to checkpoint non-finite weights")
        tensors, meta = learner_state(self.model, self.ema, self.opt, self.gen)
        pool = self.pool.state()
        for key in ("x", "labels"):  # the global pool, so a run resumes with any number of processes
            if key in pool:
                pool[key] = ddp.gather_cat(pool[key], self.world)
        pool["k"] = self.pool.k_global
        tensors.update(prefixed("pool", pool))
        if self.round_teacher is not None:
            tensors.update(prefixed("teacher", self.round_teacher.state_dict()))
        meta.update(kind="distill-state", update=self.update, pool_stage=self.pool_stage, nfe=self.nfe,
                    skipped=self.skipped, nan_streak=self.nan_streak, elapsed=self.elapsed,
                    histogram=self.histogram.to_dict(), config=self.config_dict())
        path = self.run.checkpoints / STATE_FILE
        return save_tensors(path, tensors, meta) if self.world.main else path

    def load_state(self) -> bool:
        path = self.run.checkpoints / STATE_FILE
        state = read_state(path, "distill-state")
        if state is None:
            return False
        tensors, meta = state
        saved = meta["config"]
        if DistillConfig(**saved["distill"]) != self.cfg or saved["base_sha256"] != self.base_sha256:
            raise DsdError(f"{path} was written with other settings or another base model; resume with the run's own config")
        restore_learner_state(tensors, meta, self.model, self.ema, self.opt, self.gen, path)
        self.pool.load(unprefixed("pool", tensors))
        teacher = unprefixed("teacher", tensors)
        if teacher:
            self.round_teacher = copy.deepcopy(self.model).eval().requires_grad_(False)
            self.round_teacher.load_state_dict(teacher)
        self.histogram.load(meta["histogram"])
        self.update, self.pool_stage = meta["update"], meta["pool_stage"]
        self.nfe, self.skipped, self.nan_streak = meta["nfe"], meta["skipped"], meta["nan_streak"]
        self.elapsed = meta["elapsed"]
        return True

    def provenance(self, steps: int) -> dict:
        return {
            "command": "distill",
            "method": self.cfg.method,
            "schedule": self.cfg.schedule,
            "from_steps": self.cfg.n_from,
            "target_steps": steps,
            "updates": self.update,
            "batch": self.cfg.batch,
            "lr": self.cfg.lr,
            "weight": self.cfg.weight,
            "ema_decay": self.cfg.ema_decay,
            "ema_teacher": self.cfg.ema_teacher,
            "lockstep": self.cfg.lockstep,
            "seed": self.cfg.seed,
            "guidance": self.cfg.guidance if self.null is not None else None,
            "processes": self.world.size,
            "amp": self.cfg.amp,
            "stage_methods": self.methods,
            "nfe_per_update": round(self.nfe["updates"] / max(self.update, 1), 2),
            "nfe_total": self.nfe["updates"] + self.nfe["warmup"],
            "skipped_updates": self.skipped,
            "wall_seconds": round(self.elapsed, 1),
            "base_model": self.base_name,
            "base_sha256": self.base_sha256,
            "data": self.data_spec or self.base_data,
            "dsd_version": __version__,
        }

    def save_distilled(self, path: Path, steps: int) -> Path:
        if not self.world.main:
            return path
        return save_model(path, self.ema.shadow, self.schedule, self.prediction, ema=True, distilled_steps=steps,
                          provenance=self.provenance(steps),
                          guidance=self.cfg.guidance if self.null is not None else None)

    # -- the loop -----------------------------------------------------------------------------------
    def guided(self, net: Callable) -> Callable:
        """net as (x, t, labels) → the guided prediction (plain net(x, t) for an unconditional model)."""
        net = autocast_net(net, self.device, self.cfg.amp)
        return lambda x, t, labels=None: guided_prediction(net, x, t, labels, self.cfg.guidance, self.null)

    def preview(self, label: str) -> Path:
        path = self.run.samples / f"{label}.png"
        if not self.world.main:
            return path
        loaded = LoadedModel(self.ema.shadow, self.schedule, self.prediction)
        classes = None if self.null is None else torch.arange(64) % self.null
        images = sample(loaded, self.cfg.n_to, num=64, seed=0, device=self.device, classes=classes,
                        guidance=self.cfg.guidance)
        return write_samples(to_uint8(images), path)

    def stage_start_name(self, si: int) -> str:
        """What starting stage `si` does, for a front end: a DSD stage samples its pool up to each trajectory's
        starting pair (the warm-up: no loss exists yet); a PD stage only copies weights."""
        return "starting a PD round" if self.methods[si] == "pd" else "filling the trajectory pool"

    def start_stage(self, si: int) -> None:
        """DSD stages park the trajectory pool on the new grid; a PD stage starts a round: the student
        continues from the EMA weights, which also become the frozen teacher, with a fresh optimizer."""
        self.pool_stage = si
        if self.methods[si] == "pd":
            self.model.load_state_dict(self.ema.shadow.state_dict())
            self.round_teacher = copy.deepcopy(self.ema.shadow).eval().requires_grad_(False)
            self.opt = adamw(self.model.parameters(), lr=self.cfg.pd_lr)
        else:
            evals = self.pool.start_stage(self.stages[si].steps, self.schedule.num_timesteps,
                                          self.guided(self.teacher()), self.schedule, self.prediction,
                                          self.cfg.clip_x0)
            self.nfe["warmup"] += self.guided_cost * evals * self.world.size

    def step(self) -> dict:
        """One update of the current stage's method; returns what the event log records."""
        if self.methods[self.pool_stage] == "pd":
            return self.pd_step()
        pool = self.pool
        k = pool.k
        t, t_mid, t_next = pool.pair_timesteps()
        student, labels = self.guided(self.student), pool.labels
        teacher = in_chunks(self.guided(self.teacher()), self.cfg.teacher_chunks)
        res = dsd_pair_loss(lambda x, t: student(x, t, labels), lambda x, t: teacher(x, t, labels), pool.x, t, t_mid, t_next, self.schedule,
                            self.prediction, self.cfg.weight, self.cfg.clip_x0)
        event = self.apply(res, k, t, NFE_PER_SAMPLE["dsd"] * self.guided_cost)
        pool.continue_from(res.x_next, ddp.any_true(pool.non_finite(res.x_next), self.world))
        return event

    def pd_step(self) -> dict:
        """One PD update: training images noised to random student timesteps of the round's grid."""
        steps, b = self.stages[self.pool_stage].steps, self.cfg.batch
        k = torch.randint(0, steps // 2, (b,), generator=self.gen)
        idx = torch.randint(0, self.data.shape[0], (b,), generator=self.gen)
        eps = torch.randn((b, *self.data.shape[1:]), generator=self.gen)
        t, t_mid, t_next = grid_pairs(ddim_timesteps(steps, self.schedule.num_timesteps), k, self.device)
        res = pd_loss(self.model, self.round_teacher, self.data[idx].to(self.device), eps.to(self.device), t,
                      t_mid, t_next, self.schedule, self.prediction, self.cfg.clip_x0)
        return self.apply(res, k, t, NFE_PER_SAMPLE["pd"])

    def apply(self, res: PairResult, k: torch.Tensor, t: torch.Tensor, nfe_per_sample: int) -> dict:
        """Optimizer and EMA step for a finite loss (skip for a non-finite one); the update's event."""
        self.nfe["updates"] += nfe_per_sample * len(k) * self.world.size
        finite = ddp.mean(float(torch.isfinite(res.loss)), self.world, self.device) == 1.0  # all ranks agree
        event = {"update": self.update + 1, "stage": self.stages[self.pool_stage].steps,
                 "method": self.methods[self.pool_stage], "nfe": self.nfe["updates"] + self.nfe["warmup"]}
        if finite:
            self.opt.zero_grad(set_to_none=True)
            grad_norm = self.scaler.step(res.loss, self.params, self.opt, self.cfg.grad_clip)
            self.ema.update(self.model)
            self.histogram.add(ddp.gather_cat(t, self.world).tolist())
            self.nan_streak = 0
            by_index = {}
            for idx in k.unique().tolist():
                by_index[str(idx)] = round(float(res.per_sample[(k == idx).to(res.per_sample.device)].mean()), 6)
            loss = ddp.mean(float(res.loss.detach()), self.world, self.device)
            event.update(loss=loss, grad_norm=float(grad_norm), loss_by_pair=by_index)
        else:
            self.skipped += 1
            self.nan_streak += 1
            event.update(loss=None, skipped=True)
        return event

    def run_loop(self, on_progress: Callable[[int, dict], None] | None = None, resume: bool = False,
                 phase: Callable[[str], ContextManager] = contextlib.nullcontext) -> Path:
        """Distil to the end. `phase(name)` wraps the steps between updates that take a while (filling the
        trajectory pool at a stage's start, preview grids, checkpoints, the final save), for a front end."""
        if resume and not self.load_state():
            raise DsdError(f"nothing to resume in {self.run.root} (no {STATE_FILE}: it stopped before its first "
                           "checkpoint); start it again with another --run-dir")
        if resume and self.update >= self.cfg.updates and (self.run.root / MODEL_FILE).exists():
            raise DsdError(f"the run in {self.run.root} already finished; its model is {self.run.root / MODEL_FILE}")
        if resume:
            self.run.event("resume", update=self.update)
        else:
            self.run.write_config(self.config_dict())
            self.run.event("config", **self.config_dict())
            with phase(PREVIEW):
                self.run.event("samples", update=0, path=str(self.preview("update_0000000")), label="undistilled")
        while self.update < self.cfg.updates:
            start = time.perf_counter()
            si = self.stage_index(self.update)
            if si != self.pool_stage:
                with phase(self.stage_start_name(si)):
                    self.start_stage(si)
                self.run.event("stage", index=si, steps=self.stages[si].steps, method=self.methods[si],
                               target_steps=self.stages[si].target_steps, updates=self.stages[si].updates)
            event = self.step()
            self.update += 1
            self.elapsed += time.perf_counter() - start
            if event.get("skipped"):
                self.run.event("warning", update=self.update,
                               message="non-finite loss: update skipped, affected trajectories restarted")
                if self.nan_streak >= MAX_NAN_STREAK:
                    self.run.event("error", message=f"{MAX_NAN_STREAK} non-finite losses in a row")
                    raise DsdError(f"{MAX_NAN_STREAK} non-finite losses in a row at update {self.update}; "
                                   "lower --lr (the last checkpoint holds finite weights)")
            self.run.event("loss", **event)
            if on_progress is not None:
                on_progress(self.update, event)
            if self.update % self.cfg.histogram_every == 0 or self.update == self.cfg.updates:
                self.run.event("histogram", update=self.update, **self.histogram.to_dict())
            if self.update == self.stage_ends[si]:
                steps = self.stages[si].target_steps
                if steps != self.cfg.n_to and steps & (steps - 1) == 0:
                    with phase(f"saving the {steps}-step model"):
                        path = self.save_distilled(self.run.root / f"model-{steps}steps.safetensors", steps)
                    self.run.event("snapshot", update=self.update, steps=steps, path=str(path))
            if self.update % self.cfg.sample_every == 0 or self.update == self.cfg.updates:
                with phase(PREVIEW):
                    path = self.preview(f"update_{self.update:07d}")
                self.run.event("samples", update=self.update, path=str(path))
            stop = stop_requested() and self.update < self.cfg.updates  # Ctrl-C: checkpoint, then stop
            if self.update % self.cfg.checkpoint_every == 0 or self.update == self.cfg.updates or stop:
                with phase("saving a checkpoint"):
                    path = self.save_state()
                self.run.event("checkpoint", update=self.update, path=str(path))
            if stop:
                self.run.event("interrupted", update=self.update)
                raise Interrupted(f"checkpoint at update {self.update} saved; resume with: dsd distill --resume "
                                  f"{self.run.root}")
        with phase("saving the distilled model"):
            path = self.save_distilled(self.run.root / MODEL_FILE, self.cfg.n_to)
        self.run.event("end", update=self.update, model=str(path), nfe=self.nfe, skipped=self.skipped,
                       wall_seconds=round(self.elapsed, 1))
        return path


class SilentRun(RunDir):
    """The run folder as seen by ranks other than 0: same paths, no writes."""

    def write_config(self, config: dict) -> None:
        pass

    def event(self, kind: str, **fields) -> None:
        pass


def load_base(name_or_path: str, device: torch.device) -> tuple[LoadedModel, str, str]:
    """The model to distil, with its name and the sha256 of its file (recorded in the provenance)."""
    loaded = load_model(name_or_path, device)
    return loaded, str(name_or_path), file_sha256(resolve_model_path(name_or_path))
