"""A distillation run: stages from a step scheduler, the update object of the chosen method at each stage
(`updates/`), the optimizer and EMA step, events, previews and resumable checkpoints (the shared loop of
`dsd_core.loop`) in a run directory.

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

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from .. import distributed as ddp
from ..accel import Scaler, autocast_net, check_amp, maybe_compile
from ..atomic import atomic_write_bytes
from ..checkpoint import (
    LoadedModel,
    file_sha256,
    learner_state,
    load_model,
    load_state_dict,
    load_tensors,
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
from ..errors import DsdError, OptionError
from ..guidance import check_guidance, guided_prediction, null_class
from ..images import to_uint8, write_samples
from ..loop import MODEL_FILE, PREVIEW, ResumableLoop
from ..optim import adamw
from ..runs import STATE_FILE, RunDir
from ..sampling import sample
from .agreement import Agreement
from .config import DistillConfig, training_data_spec
from .dsd import PairResult
from .fd_check import fd_check_for
from .methods import stage_methods
from .pool import TrajectoryPool
from .stepping import Stage, StepHistogram
from .updates import UPDATES, MethodUpdate, UpdateBatch, stage_plan

MAX_NAN_STREAK = 20


class Distiller(ResumableLoop):
    """One distillation run of a loaded model; `run_loop()` distils to the end, resuming if asked."""

    command, unit, final_phase = "distill", "update", "saving the distilled model"
    nothing_to_resume_tail = ": it stopped before its first checkpoint); start it again with another {run_dir}"

    def __init__(self, base: LoadedModel, cfg: DistillConfig, run_dir: str | Path, device: torch.device,
                 base_name: str = "", base_sha256: str = "", world: ddp.World = ddp.SINGLE):
        self.cfg, self.device, self.world = cfg, device, world
        self.sample_every, self.checkpoint_every = cfg.sample_every, cfg.checkpoint_every
        check_amp(cfg.amp, device)
        self.null_id = null_class(base.model)  # the class id that means "no class" (unconditional half)
        self.num_classes = getattr(base.model.config, "num_classes", None)  # None: an unconditional model
        check_guidance(base.model, None, cfg.guidance)
        self.base_name, self.base_sha256 = base_name, base_sha256
        self.schedule, self.prediction = base.schedule, base.prediction
        self.stages: list[Stage] = cfg.stages(base.schedule.num_timesteps)
        self.stage_ends = np.cumsum([s.updates for s in self.stages]).tolist()
        plan = stage_plan(cfg.method, len(self.stages), cfg.pd_stages)
        self.methods = stage_methods(cfg.method, len(self.stages), cfg.pd_stages)
        self.base_data = base.meta.get("provenance", {}).get("data", "")
        self.data_spec, self.data = "", None
        self.check_plan(base)
        self.run = RunDir(run_dir) if world.main else SilentRun(run_dir)
        torch.manual_seed(cfg.seed)
        self.model = base.model.to(device).train()
        self.ema = EMA(self.model, cfg.ema_decay, warmup=False)
        self.agreement = self.make_agreement(base)
        self.fd_check = fd_check_for(cfg.quality_fd, self.base_data, self.num_classes, device) if world.main else None
        self.best: dict[str, float] = {}  # best agreement (PSNR) so far per target step count
        self.stale = 0  # agreement checks of this stage since its last new best
        self.stage_cut = False  # this update ended its stage early: checkpoint and preview now
        self.last_quality: tuple[int, float, float | None] | None = None  # (steps, PSNR, FD) of the latest check
        self.updates: dict[str, MethodUpdate] = {name: UPDATES[name](self) for name in dict.fromkeys(plan)}
        self.stage_updates = [self.updates[name] for name in plan]
        self.student = maybe_compile(self.model, cfg.compile)
        if world.active:
            from torch.nn.parallel import DistributedDataParallel

            self.student = DistributedDataParallel(self.student, device_ids=[device] if device.type == "cuda" else None)
        self.scaler = Scaler(device, cfg.amp)
        self.reset_optimizer(cfg.lr)
        self.params = list(self.model.parameters())  # walked once, not per update (docs/benchmarks.md, "Engine costs")
        self.gen = torch.Generator().manual_seed(cfg.seed)
        c = self.model.config
        self.pool = TrajectoryPool(cfg.batch, (c.in_channels, c.image_size, c.image_size), self.gen, device,
                                   cfg.lockstep, num_classes=self.num_classes, rank=world.rank, world=world.size)
        self.guided_cost = 2 if self.num_classes is not None and cfg.guidance not in (0.0, 1.0) else 1
        self.pool_stage = -1
        self.histogram = StepHistogram(self.stages[0].steps, self.schedule.num_timesteps)
        self.update = 0  # the position in the budget (a stage that ends early jumps to its end)
        self.updates_run = 0  # updates actually done
        self.nfe = {"updates": 0, "warmup": 0}
        self.skipped = 0
        self.nan_streak = 0
        self.elapsed = 0.0

    def check_plan(self, base: LoadedModel) -> None:
        """PD stages need training data and an unconditional model in one process; load the data."""
        if "pd" not in self.methods:
            return
        if self.world.active:
            raise OptionError("data-parallel runs ({nproc}) support dsd and tsd, not PD stages")
        if self.num_classes is not None:
            raise OptionError("PD of class-conditional models is not supported; use {method} dsd or tsd")
        self.data_spec = training_data_spec(self.cfg.data, base)
        self.data, _ = load_dataset(self.data_spec)
        c = base.model.config
        if tuple(self.data.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
            raise DsdError(f"the data {self.data_spec} are {tuple(self.data.shape[1:])} images but the model "
                           f"makes {(c.in_channels, c.image_size, c.image_size)}")

    def make_agreement(self, base: LoadedModel) -> Agreement | None:
        """The agreement check's reference, drawn by the starting weights (the EMA is still a copy of them)."""
        if not self.cfg.quality_every or not self.world.main:
            return None
        start = LoadedModel(self.ema.shadow, base.schedule, base.prediction)
        return Agreement(start, self.cfg.n_from, self.cfg.quality_num, self.device, self.num_classes,
                         self.cfg.guidance)

    def check_quality(self, steps: int, phase) -> None:
        """Score the EMA model at `steps` against the reference; keep it as model-best-Nsteps if it is the best
        so far at that step count."""
        if self.agreement is None:
            return
        current = LoadedModel(self.ema.shadow, self.schedule, self.prediction)
        with phase(f"checking agreement at {steps} steps"):
            mse, psnr = self.agreement.score(current, steps)
        fd_scores = {}
        if self.fd_check is not None:
            with phase(f"scoring {self.fd_check.num} samples at {steps} steps (FD)"):
                fd_scores = self.fd_check.score(current, steps)
        self.last_quality = (steps, psnr, fd_scores.get("fd"))
        best = psnr > self.best.get(str(steps), -math.inf)
        self.stale = 0 if best else self.stale + 1
        if best:
            self.best[str(steps)] = psnr
            with phase(f"saving the best {steps}-step model"):
                self.save_distilled(self.best_path(steps), steps)
        self.run.event("quality", update=self.update, steps=steps, mse=mse, psnr=psnr, best=best, **fd_scores)

    def best_path(self, steps: int) -> Path:
        return self.run.root / f"model-best-{steps}steps.safetensors"

    # -- the stage-end rule -------------------------------------------------------------------------
    def stage_stalled(self) -> bool:
        """`patience` agreement checks in a row without a new best (rank 0 checks; every rank follows)."""
        if not self.cfg.patience:
            return False
        return ddp.mean(float(self.stale >= self.cfg.patience), self.world, self.device) > 0

    def restore_best(self, steps: int, phase) -> None:
        """Continue from the stage's best-agreeing snapshot (model and EMA), with a fresh optimizer, so the
        next stage builds on the best model of this one rather than on its drifted end."""
        ddp.mean(0.0, self.world, self.device)  # every rank waits until rank 0 has written the snapshot
        path = self.best_path(steps)
        if not path.is_file():
            return
        with phase(f"restoring the best {steps}-step model"):
            state = unprefixed("model", load_tensors(path, self.device)[0])
            load_state_dict(self.ema.shadow, state, path)
            load_state_dict(self.model, state, path)
            self.reset_optimizer(self.cfg.lr)
        self.run.event("restore", update=self.update, steps=steps, psnr=self.best.get(str(steps)), path=str(path))

    def reset_optimizer(self, lr: float) -> None:
        self.opt = adamw(self.model.parameters(), lr=lr)

    # -- what the run is ----------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {
            **self.config_header(),
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
        """The current stage's teacher."""
        return self.stage_updates[max(self.pool_stage, 0)].teacher()

    @property
    def frozen_base(self) -> torch.nn.Module | None:
        """TSD's frozen starting model (None for other methods)."""
        return getattr(self.updates.get("tsd"), "frozen_base", None)

    @property
    def round_teacher(self) -> torch.nn.Module | None:
        """The current PD round's frozen teacher (None before the first PD round)."""
        return getattr(self.updates.get("pd"), "round_teacher", None)

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
        for update in self.updates.values():
            tensors.update(update.state())
        meta.update(kind="distill-state", update=self.update, updates_run=self.updates_run, stale=self.stale,
                    pool_stage=self.pool_stage, nfe=self.nfe,
                    skipped=self.skipped, nan_streak=self.nan_streak, elapsed=self.elapsed,
                    histogram=self.histogram.to_dict(), config=self.config_dict(), best=self.best)
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
            raise DsdError(f"{path} was written with other settings or another base model; "
                           "resume with the run's own config")
        restore_learner_state(tensors, meta, self.model, self.ema, self.opt, self.gen, path)
        self.pool.load(unprefixed("pool", tensors))
        for update in self.updates.values():
            update.load(tensors)
        self.histogram.load(meta["histogram"])
        self.update, self.pool_stage = meta["update"], meta["pool_stage"]
        self.updates_run, self.stale = meta.get("updates_run", self.update), meta.get("stale", 0)
        self.nfe, self.skipped, self.nan_streak = meta["nfe"], meta["skipped"], meta["nan_streak"]
        self.elapsed = meta["elapsed"]
        self.best = dict(meta.get("best", {}))  # absent in runs of an older dsd
        return True

    def provenance(self, steps: int) -> dict:
        """The settings (the config, under the names `dsd info` shows) and the facts of the run so far."""
        settings = {("from_steps" if k == "n_from" else k): v for k, v in asdict(self.cfg).items() if k != "n_to"}
        return {
            "command": "distill",
            **settings,
            "target_steps": steps,
            "updates": self.updates_run,
            "update_budget": self.cfg.updates,
            "guidance": self.cfg.guidance if self.num_classes is not None else None,
            "processes": self.world.size,
            "stage_methods": self.methods,
            "nfe_per_update": round(self.nfe["updates"] / max(self.updates_run, 1), 2),
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
                          guidance=self.cfg.guidance if self.num_classes is not None else None)

    def save_final(self) -> Path:
        """The last EMA model, or (keep best, or auto for a self-taught method) the snapshot that agreed best at
        the target step count."""
        best = self.best_path(self.cfg.n_to)
        if self.cfg.keeps_best and self.world.main and best.is_file():
            return atomic_write_bytes(self.run.root / MODEL_FILE, best.read_bytes())
        return self.save_distilled(self.run.root / MODEL_FILE, self.cfg.n_to)

    # -- the loop's hooks ---------------------------------------------------------------------------
    @property
    def position(self) -> int:
        return self.update

    @property
    def total(self) -> int:
        return self.cfg.updates

    def due(self, every: int) -> bool:
        return super().due(every) or self.stage_cut

    def guided(self, net: Callable) -> Callable:
        """net as (x, t, labels) → the guided prediction (plain net(x, t) for an unconditional model)."""
        net = autocast_net(net, self.device, self.cfg.amp)
        return lambda x, t, labels=None: guided_prediction(net, x, t, labels, self.cfg.guidance, self.null_id)

    def preview(self, label: str | None = None) -> Path:
        path = self.run.samples / f"{label or f'update_{self.update:07d}'}.png"
        if not self.world.main:
            return path
        loaded = LoadedModel(self.ema.shadow, self.schedule, self.prediction)
        classes = None if self.num_classes is None else torch.arange(64) % self.num_classes
        images = sample(loaded, self.cfg.n_to, num=64, seed=0, device=self.device, classes=classes,
                        guidance=self.cfg.guidance)
        return write_samples(to_uint8(images), path)

    def start_fresh(self, phase) -> None:
        super().start_fresh(phase)
        with phase(PREVIEW):
            self.run.event("samples", update=0, path=str(self.preview("update_0000000")), label="undistilled")

    def start_stage(self, si: int) -> None:
        self.pool_stage = si
        self.stale = 0
        self.nfe["warmup"] += self.stage_updates[si].start_stage(self.stages[si])

    def step(self) -> dict:
        """One update of the current stage's method; returns what the event log records."""
        update = self.stage_updates[self.pool_stage]
        batch = update.loss(self.stages[self.pool_stage])
        event = self.apply(batch, update)
        update.finish(batch)
        return event

    def apply(self, batch: UpdateBatch, update: MethodUpdate) -> dict:
        """Optimizer and EMA step for a finite loss (skip for a non-finite one); the update's event."""
        res, k, t = batch.result, batch.pairs, batch.timesteps
        self.nfe["updates"] += update.evaluations(batch) * self.world.size
        finite = ddp.mean(float(torch.isfinite(res.loss)), self.world, self.device) == 1.0  # all ranks agree
        if not finite:
            self.skipped += 1
            self.nan_streak += 1
            return {**self.event_head(update), "loss": None, "skipped": True}
        lr = self.stage_lr()
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        grad_norm = self.scaler.step(res.loss, self.params, self.opt, self.cfg.grad_clip)
        self.ema.update(self.model)
        self.histogram.add(ddp.gather_cat(t, self.world).tolist())
        self.nan_streak = 0
        loss = ddp.mean(float(res.loss.detach()), self.world, self.device)
        return {**self.event_head(update), "loss": loss, "grad_norm": float(grad_norm), "lr": lr,
                "loss_by_pair": loss_by_pair(res, k)}

    def stage_lr(self) -> float:
        """The learning rate of this update: the stage method's rate, constant or (`lr_decay` cosine) falling
        from it to zero over the stage, so that each stage ends settled on its frozen teacher's target."""
        si = self.pool_stage
        base = self.cfg.pd_lr if self.methods[si] == "pd" else self.cfg.lr
        if self.cfg.lr_decay == "constant":
            return base
        done = (self.update - (self.stage_ends[si] - self.stages[si].updates)) / self.stages[si].updates
        return base * 0.5 * (1.0 + math.cos(math.pi * done))

    def event_head(self, update: MethodUpdate) -> dict:
        return {"update": self.update + 1, "stage": self.stages[self.pool_stage].steps, "method": update.kind,
                "nfe": self.nfe["updates"] + self.nfe["warmup"]}

    def advance(self, phase) -> dict:
        start = time.perf_counter()
        self.stage_cut = False
        si = self.stage_index(self.update)
        if si != self.pool_stage:
            with phase(self.stage_updates[si].start_label):
                self.start_stage(si)
            first = self.cfg.teacher_first_in(self.stages[si]) if self.methods[si] == "dsd" else None
            self.run.event("stage", index=si, steps=self.stages[si].steps, method=self.methods[si],
                           target_steps=self.stages[si].target_steps, updates=self.stages[si].updates,
                           teacher_first=first)
            if self.cfg.patience:  # the stage's starting model is its first candidate: a stage never loses it
                self.check_quality(self.stages[si].target_steps, phase)
        event = self.step()
        self.update += 1
        self.updates_run += 1
        self.elapsed += time.perf_counter() - start
        return event

    def log_update(self, event: dict) -> None:
        if event.get("skipped"):
            self.run.event("warning", update=self.update,
                           message="non-finite loss: update skipped, affected trajectories restarted")
            if self.nan_streak >= MAX_NAN_STREAK:
                self.run.event("error", message=f"{MAX_NAN_STREAK} non-finite losses in a row")
                raise OptionError("{n} non-finite losses in a row at update {update}; lower {lr} (the last "
                                  "checkpoint holds finite weights)", n=MAX_NAN_STREAK, update=self.update)
        self.run.event("loss", **event)

    def after_update(self, event: dict, phase) -> None:
        """The step histogram at its interval; a snapshot of each power-of-two step count reached on the way."""
        if self.due(self.cfg.histogram_every):
            self.run.event("histogram", update=self.update, **self.histogram.to_dict())
        si = self.stage_index(self.update - 1)
        if self.cfg.quality_every and (self.due(self.cfg.quality_every) or self.update == self.stage_ends[si]):
            self.check_quality(self.stages[si].target_steps, phase)
            if self.update < self.stage_ends[si] and self.stage_stalled():
                self.run.event("stage_end", update=self.update, steps=self.stages[si].target_steps,
                               skipped=self.stage_ends[si] - self.update, checks=self.cfg.patience)
                self.update, self.stage_cut = self.stage_ends[si], True
        if self.update == self.stage_ends[si]:
            steps = self.stages[si].target_steps
            if self.cfg.patience:
                self.restore_best(steps, phase)
            if steps != self.cfg.n_to and steps & (steps - 1) == 0:
                with phase(f"saving the {steps}-step model"):
                    path = self.save_distilled(self.run.root / f"model-{steps}steps.safetensors", steps)
                self.run.event("snapshot", update=self.update, steps=steps, path=str(path))

    def end_fields(self) -> dict:
        return {"nfe": self.nfe, "skipped": self.skipped, "wall_seconds": round(self.elapsed, 1),
                "updates_run": self.updates_run}


def loss_by_pair(res: PairResult, k: torch.Tensor) -> dict[str, float]:
    """The mean weighted loss of each pair index in the batch, for the event log."""
    by_index = {}
    for idx in k.unique().tolist():
        by_index[str(idx)] = round(float(res.per_sample[(k == idx).to(res.per_sample.device)].mean()), 6)
    return by_index


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
