"""Standard denoising training: predict ε (or x0, or v) of noised data at uniform timesteps.

The loop keeps an EMA of the weights (the copy that is saved for sampling), clips the gradient norm, warms the
learning rate up and decays it with a cosine, writes sample grids and resumable checkpoints into a run
directory, and draws every random number from one seeded generator whose state is checkpointed, so a resumed
run ends bit-identical to an uninterrupted one (on the CPU).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from .accel import Scaler, autocast_net, check_amp, maybe_compile, to_device
from .checkpoint import LoadedModel, learner_state, read_state, restore_learner_state, save_model, save_tensors
from .checks import at_least, below_one, check_seed, config_from_file, positive
from .ddim import add_noise, check_prediction, target_for
from .distill.interleave import SelfDistillHelper
from .ema import EMA
from .errors import DsdError, OptionError
from .images import to_uint8, write_samples
from .limits import MAX_BATCH, at_most, check_batch
from .loop import MODEL_FILE, ResumableLoop
from .models import UNet, UNetConfig, count_parameters
from .optim import adamw
from .runs import STATE_FILE, RunDir
from .sampling import sample
from .schedule import SCHEDULE_NAMES, NoiseSchedule


@dataclass
class TrainConfig:
    steps: int = 8000
    batch: int = 128
    lr: float = 5e-4
    warmup: int = 200
    min_lr_ratio: float = 0.1
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    prediction: str = "eps"
    schedule: str = "linear"
    log_every: int = 10
    sample_every: int = 1000
    sample_steps: int = 32
    checkpoint_every: int = 500
    # train-distillation: a DSD update (its own optimizer at sd_lr_scale × the current lr) every sd_every steps
    self_distill: bool = False
    sd_every: int = 1
    sd_lr_scale: float = 0.1
    sd_steps: int = 8
    sd_batch: int = 64
    # class-conditional training: labels replaced by the null class with this probability (for guidance)
    conditional: bool = False
    label_dropout: float = 0.1
    amp: str = "off"  # off, bf16 or fp16: autocast of the network (the loss stays fp32)
    compile: bool = False  # torch.compile the network

    def __post_init__(self) -> None:
        check_prediction(self.prediction)
        at_least(1, steps=self.steps, batch=self.batch, log_every=self.log_every, sample_every=self.sample_every,
                 sample_steps=self.sample_steps, checkpoint_every=self.checkpoint_every, sd_every=self.sd_every,
                 sd_steps=self.sd_steps, sd_batch=self.sd_batch)
        at_least(0, warmup=self.warmup)
        at_most(MAX_BATCH, "images per batch", batch=self.batch, sd_batch=self.sd_batch)
        check_seed(seed=self.seed)
        positive(lr=self.lr, sd_lr_scale=self.sd_lr_scale, grad_clip=self.grad_clip)
        check_amp(self.amp)
        below_one(label_dropout=self.label_dropout)
        if self.schedule not in SCHEDULE_NAMES:
            raise OptionError("unknown noise schedule {value!r}; choose one of {names}", "schedule",
                              value=self.schedule, names=", ".join(SCHEDULE_NAMES))

    def check_for(self, model: UNetConfig, num_timesteps: int) -> None:
        """The settings that depend on the model and its schedule: the noise a batch holds, and step counts
        the schedule can take (a preview grid would otherwise fail after the first `sample_every` steps)."""
        values = model.in_channels * model.image_size**2
        check_batch(self.batch, values)
        check_batch(self.sd_batch, values, "sd_batch")
        if self.sample_steps > num_timesteps:
            raise OptionError("{sample_steps} is {n}, more than the schedule's {t} timesteps", n=self.sample_steps,
                              t=num_timesteps)
        if self.self_distill and 2 * self.sd_steps > num_timesteps:
            raise OptionError("{sd_steps} is {n}: DSD walks a grid of twice as many steps, more than the schedule's "
                              "{t} timesteps", n=self.sd_steps, t=num_timesteps)


def short_run_message(cfg: TrainConfig) -> str | None:
    """A run that ends inside the learning-rate warm-up has barely trained: its samples are noise. (The EMA is
    no such trap here: its decay warms up as (1+n)/(10+n), so it averages about the last n/9 steps.)"""
    if cfg.steps >= cfg.warmup:
        return None
    return (f"{cfg.steps} steps end inside the {cfg.warmup}-step learning-rate warm-up: the model will sample "
            f"noise; train for thousands of steps (default {TrainConfig.steps})")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio`·lr at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def drop_labels(labels: torch.Tensor, null_class: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """Replace each label by the null class with probability p, so one network learns both the conditional
    and the unconditional prediction that classifier-free guidance mixes."""
    drop = torch.rand(labels.shape, generator=gen) < p
    return torch.where(drop.to(labels.device), torch.full_like(labels, null_class), labels)


def denoising_loss(model: UNet, x0: torch.Tensor, schedule: NoiseSchedule, prediction: str, gen: torch.Generator,
                   labels: torch.Tensor | None = None):
    """Mean squared error of the model's prediction at a uniformly drawn timestep (in fp32 under autocast)."""
    t = torch.randint(0, schedule.num_timesteps, (x0.shape[0],), generator=gen).to(x0.device)
    eps = torch.randn(x0.shape, generator=gen).to(x0.device)
    x_t = add_noise(x0, eps, t, schedule)
    pred = model(x_t, t) if labels is None else model(x_t, t, labels)
    return F.mse_loss(pred.float(), target_for(prediction, x0, eps, t, schedule).float())


class Trainer(ResumableLoop):
    """One training run in a run directory; `run_loop()` trains to the end, resuming if asked."""

    command, unit, final_phase = "train", "step", "saving the EMA model"

    def __init__(
        self,
        data: torch.Tensor,
        model_config: UNetConfig,
        cfg: TrainConfig,
        run_dir: str | Path,
        device: torch.device,
        data_name: str = "",
        data_spec: str = "",
        labels: torch.Tensor | None = None,
    ):
        if data.ndim != 4 or data.shape[1] != model_config.in_channels or data.shape[2] != model_config.image_size:
            raise DsdError(
                f"data of shape {tuple(data.shape[1:])} does not fit a model for "
                f"{model_config.in_channels}×{model_config.image_size}×{model_config.image_size} images"
            )
        if cfg.conditional and (model_config.num_classes is None or labels is None or len(labels) != len(data)):
            raise DsdError("conditional training needs a model with classes and one label per image")
        if labels is not None and cfg.conditional and int(labels.max()) >= model_config.num_classes:
            raise DsdError(f"label {int(labels.max())} is out of range for {model_config.num_classes} classes")
        self.schedule = NoiseSchedule(cfg.schedule)
        cfg.check_for(model_config, self.schedule.num_timesteps)
        self.data, self.cfg, self.device = data, cfg, device
        self.labels = labels if cfg.conditional else None
        self.data_name, self.data_spec = data_name, data_spec
        self.run = RunDir(run_dir, create=False)  # made when the run starts: every check above and below first
        torch.manual_seed(cfg.seed)
        self.model = UNet(model_config).to(device)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.opt = adamw(self.model.parameters(), lr=cfg.lr)
        check_amp(cfg.amp, device)
        self.net = autocast_net(maybe_compile(self.model, cfg.compile), device, cfg.amp)
        self.scaler = Scaler(device, cfg.amp)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.sample_every, self.checkpoint_every = cfg.sample_every, cfg.checkpoint_every
        self.sd = None
        if cfg.self_distill:
            self.sd = SelfDistillHelper(self.model, self.ema.shadow, self.schedule, cfg.prediction, cfg.sd_steps,
                                        cfg.sd_batch, self.gen, device, cfg.grad_clip, cfg.amp, self.net)

    # -- checkpoints --------------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {
            **self.config_header(),
            "data": self.data_name,
            "data_spec": self.data_spec,
            "num_images": int(self.data.shape[0]),
            "model_config": self.model.config.to_dict(),
            "train": asdict(self.cfg),
        }

    def save_state(self) -> Path:
        tensors, meta = learner_state(self.model, self.ema, self.opt, self.gen)
        meta.update(kind="train-state", step=self.step, config=self.config_dict())
        if self.sd is not None:
            sd_tensors, meta["self_distill"] = self.sd.state()
            tensors.update(sd_tensors)
        return save_tensors(self.run.checkpoints / STATE_FILE, tensors, meta)

    def load_state(self) -> bool:
        path = self.run.checkpoints / STATE_FILE
        state = read_state(path, "train-state")
        if state is None:
            return False
        tensors, meta = state
        saved = meta.get("config") if isinstance(meta.get("config"), dict) else {}
        if saved.get("model_config") != self.model.config.to_dict() or \
                config_from_file(TrainConfig, saved.get("train"), path, "train") != self.cfg:
            raise DsdError(f"{path} was written with other settings; resume with the run's own config.json")
        restore_learner_state(tensors, meta, self.model, self.ema, self.opt, self.gen, path)
        self.step = meta["step"]
        if self.sd is not None:
            self.sd.load(tensors, meta["self_distill"])
        return True

    def save_final(self) -> Path:
        return self.save_model()

    def save_model(self) -> Path:
        provenance = {
            "command": "train",
            "data": self.data_name,
            "steps": self.step,
            "batch": self.cfg.batch,
            "lr": self.cfg.lr,
            "seed": self.cfg.seed,
            "self_distill": self.sd_summary(),
            "conditional": self.cfg.conditional,
            "label_dropout": self.cfg.label_dropout if self.cfg.conditional else None,
            "dsd_version": __version__,
        }
        return save_model(self.run.root / MODEL_FILE, self.ema.shadow, self.schedule, self.cfg.prediction,
                          ema=True, provenance=provenance)

    def sd_summary(self) -> dict | None:
        if self.sd is None:
            return None
        c = self.cfg
        return {"every": c.sd_every, "lr_scale": c.sd_lr_scale, "steps": c.sd_steps, "batch": c.sd_batch,
                "nfe": self.sd.nfe}

    # -- the loop -----------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        return self.step

    @property
    def total(self) -> int:
        return self.cfg.steps

    def start_fresh(self, phase) -> None:
        self.run.write_config(self.config_dict())
        self.run.event("config", **self.config_dict(), parameters=count_parameters(self.model))

    def begin(self) -> None:
        self.model.train()
        self.losses: list[float] = []
        self.sd_losses: list[float] = []

    def preview(self) -> Path:
        """A grid of EMA samples at a fixed seed, so grids of one run are comparable."""
        loaded = LoadedModel(self.ema.shadow, self.schedule, self.cfg.prediction)
        k = self.model.config.num_classes
        classes = torch.arange(64) % k if self.cfg.conditional else None  # ids cycle 0, 1, …, K−1, 0, …
        images = sample(loaded, self.cfg.sample_steps, num=64, seed=0, device=self.device, classes=classes)
        return write_samples(to_uint8(images), self.run.samples / f"step_{self.step:07d}.png")

    def advance(self, phase) -> float:
        """One denoising step (and a DSD update when train-distilling); returns its loss."""
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, self.cfg)
        idx = torch.randint(0, self.data.shape[0], (self.cfg.batch,), generator=self.gen)
        x0 = to_device(self.data[idx], self.device)
        labels = None
        if self.labels is not None:
            null = self.model.config.num_classes  # the null class's id is the class count
            labels = drop_labels(self.labels[idx], null, self.cfg.label_dropout, self.gen).to(self.device)
        loss = denoising_loss(self.net, x0, self.schedule, self.cfg.prediction, self.gen, labels)
        if not torch.isfinite(loss):
            raise OptionError("loss became {loss} at step {step}; lower {lr} (the last checkpoint is intact)",
                              loss=loss.item(), step=self.step)
        self.opt.zero_grad(set_to_none=True)
        self.grad_norm = self.scaler.step(loss, self.model.parameters(), self.opt, self.cfg.grad_clip)
        if self.sd is not None and (self.step + 1) % self.cfg.sd_every == 0:
            self.sd_losses.append(self.sd.update(self.cfg.sd_lr_scale * lr_at(self.step, self.cfg)))
        self.ema.update(self.model)
        self.step += 1
        self.losses.append(loss.item())
        return self.losses[-1]

    def after_update(self, result: float, phase) -> None:
        """The loss event, averaged over the steps since the last one."""
        if not self.due(self.cfg.log_every):
            return
        extra = {}
        if self.sd is not None:
            extra = {"sd_loss": float(np.nanmean(self.sd_losses)) if self.sd_losses else None, "sd_nfe": self.sd.nfe,
                     "histogram": self.sd.histogram.to_dict()}
        self.run.event("loss", step=self.step, loss=float(np.mean(self.losses)), grad_norm=float(self.grad_norm),
                       lr=lr_at(self.step - 1, self.cfg), **extra)
        self.losses.clear()
        self.sd_losses.clear()
