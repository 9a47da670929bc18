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
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from .checkpoint import LoadedModel, learner_state, read_state, restore_learner_state, save_model, save_tensors
from .ddim import add_noise, check_prediction, target_for
from .distill.interleave import SelfDistillHelper
from .ema import EMA
from .errors import DsdError
from .images import to_uint8, write_samples
from .models import UNet, UNetConfig, count_parameters
from .runs import RunDir
from .sampling import sample
from .schedule import NoiseSchedule

STATE_FILE = "state.safetensors"
MODEL_FILE = "model.safetensors"


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

    def __post_init__(self) -> None:
        check_prediction(self.prediction)
        for name in ("steps", "batch", "log_every", "sample_every", "sample_steps", "checkpoint_every", "sd_every",
                     "sd_steps", "sd_batch"):
            if getattr(self, name) < 1:
                raise DsdError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.sd_lr_scale > 0):
            raise DsdError(f"learning rates must be positive, got {self.lr} and scale {self.sd_lr_scale}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio`·lr at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def denoising_loss(model: UNet, x0: torch.Tensor, schedule: NoiseSchedule, prediction: str, gen: torch.Generator):
    """Mean squared error of the model's prediction at a uniformly drawn timestep."""
    t = torch.randint(0, schedule.num_timesteps, (x0.shape[0],), generator=gen).to(x0.device)
    eps = torch.randn(x0.shape, generator=gen).to(x0.device)
    x_t = add_noise(x0, eps, t, schedule)
    return F.mse_loss(model(x_t, t), target_for(prediction, x0, eps, t, schedule))


class Trainer:
    """One training run in a run directory; `run()` trains to the end, resuming if a state exists."""

    def __init__(
        self,
        data: torch.Tensor,
        model_config: UNetConfig,
        cfg: TrainConfig,
        run_dir: str | Path,
        device: torch.device,
        data_name: str = "",
        data_spec: str = "",
    ):
        if data.ndim != 4 or data.shape[1] != model_config.in_channels or data.shape[2] != model_config.image_size:
            raise DsdError(
                f"data of shape {tuple(data.shape[1:])} does not fit a model for "
                f"{model_config.in_channels}×{model_config.image_size}×{model_config.image_size} images"
            )
        self.data, self.cfg, self.device = data, cfg, device
        self.data_name, self.data_spec = data_name, data_spec
        self.run = RunDir(run_dir)
        self.schedule = NoiseSchedule(cfg.schedule)
        torch.manual_seed(cfg.seed)
        self.model = UNet(model_config).to(device)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.sd = None
        if cfg.self_distill:
            self.sd = SelfDistillHelper(self.model, self.ema.shadow, self.schedule, cfg.prediction, cfg.sd_steps,
                                        cfg.sd_batch, self.gen, device, cfg.grad_clip)

    # -- checkpoints --------------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {
            "command": "train",
            "version": __version__,
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
        if meta["config"]["model_config"] != self.model.config.to_dict() or meta["config"]["train"] != asdict(self.cfg):
            raise DsdError(f"{path} was written with other settings; resume with the run's own config.json")
        restore_learner_state(tensors, meta, self.model, self.ema, self.opt, self.gen, path)
        self.step = meta["step"]
        if self.sd is not None:
            self.sd.load(tensors, meta["self_distill"])
        return True

    def save_model(self) -> Path:
        provenance = {
            "command": "train",
            "data": self.data_name,
            "steps": self.step,
            "batch": self.cfg.batch,
            "lr": self.cfg.lr,
            "seed": self.cfg.seed,
            "self_distill": self.sd_summary(),
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
    def preview(self) -> Path:
        """A grid of EMA samples at a fixed seed, so grids of one run are comparable."""
        loaded = LoadedModel(self.ema.shadow, self.schedule, self.cfg.prediction)
        images = sample(loaded, self.cfg.sample_steps, num=64, seed=0, device=self.device)
        return write_samples(to_uint8(images), self.run.samples / f"step_{self.step:07d}.png")

    def run_loop(self, on_progress: Callable[[int, float], None] | None = None, resume: bool = False) -> Path:
        if resume and not self.load_state():
            raise DsdError(f"nothing to resume in {self.run.root} (no {STATE_FILE})")
        if resume and self.step >= self.cfg.steps and (self.run.root / MODEL_FILE).exists():
            raise DsdError(f"the run in {self.run.root} already finished; its model is {self.run.root / MODEL_FILE}")
        if not resume:
            self.run.write_config(self.config_dict())
            self.run.event("config", **self.config_dict(), parameters=count_parameters(self.model))
        else:
            self.run.event("resume", step=self.step)
        self.model.train()
        losses: list[float] = []
        sd_losses: list[float] = []
        while self.step < self.cfg.steps:
            for group in self.opt.param_groups:
                group["lr"] = lr_at(self.step, self.cfg)
            idx = torch.randint(0, self.data.shape[0], (self.cfg.batch,), generator=self.gen)
            x0 = self.data[idx].to(self.device)
            loss = denoising_loss(self.model, x0, self.schedule, self.cfg.prediction, self.gen)
            if not torch.isfinite(loss):
                raise DsdError(f"loss became {loss.item()} at step {self.step}; lower --lr (the last checkpoint is intact)")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.opt.step()
            if self.sd is not None and (self.step + 1) % self.cfg.sd_every == 0:
                sd_losses.append(self.sd.update(self.cfg.sd_lr_scale * lr_at(self.step, self.cfg)))
            self.ema.update(self.model)
            self.step += 1
            losses.append(loss.item())
            if on_progress is not None:
                on_progress(self.step, losses[-1])
            if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                extra = {}
                if self.sd is not None:
                    extra = {"sd_loss": float(np.nanmean(sd_losses)) if sd_losses else None, "sd_nfe": self.sd.nfe,
                             "histogram": self.sd.histogram.to_dict()}
                self.run.event("loss", step=self.step, loss=float(np.mean(losses)), grad_norm=float(grad_norm),
                               lr=lr_at(self.step - 1, self.cfg), **extra)
                losses.clear()
                sd_losses.clear()
            if self.step % self.cfg.sample_every == 0 or self.step == self.cfg.steps:
                self.run.event("samples", step=self.step, path=str(self.preview()))
            if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                self.run.event("checkpoint", step=self.step, path=str(self.save_state()))
        path = self.save_model()
        self.run.event("end", step=self.step, model=str(path))
        return path
