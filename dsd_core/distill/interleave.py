"""Train-distillation: DSD updates interleaved with denoising training (the paper's Figure 3).

The authors trained from scratch and, between denoising steps, applied DSD updates with a separate optimizer
at a tenth of the learning rate. Here one `SelfDistillHelper` owns that second optimizer, a staggered
trajectory pool on the 2·`steps` grid (naive scheduler: the pairs that make `steps`-step sampling work), the
step-frequency histogram and an NFE count; the trainer calls `update()` every `every` training steps.
The teacher is the EMA of the weights being trained, as in `dsd distill`'s default. The student runs through
the trainer's own network path and the optimizer step through the same `Scaler`, so `--amp` and `--compile`
apply here as they do to the training step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..accel import Scaler, autocast_net
from ..checkpoint import optimizer_state, prefixed, restore_optimizer, unprefixed
from ..optim import adamw
from ..schedule import NoiseSchedule
from .dsd import dsd_pair_loss
from .pool import TrajectoryPool
from .stepping import StepHistogram


class SelfDistillHelper:
    def __init__(self, model: torch.nn.Module, teacher: torch.nn.Module, schedule: NoiseSchedule, prediction: str,
                 steps: int, batch: int, gen: torch.Generator, device: torch.device, grad_clip: float = 1.0,
                 amp: str = "off", student: Callable | None = None):
        self.model, self.schedule, self.prediction = model, schedule, prediction
        self.student = student if student is not None else autocast_net(model, device, amp)
        self.teacher = autocast_net(teacher, device, amp)
        self.scaler = Scaler(device, amp)
        self.grid_steps, self.grad_clip = 2 * steps, grad_clip
        self.opt = adamw(model.parameters(), lr=1e-5)
        c = model.config
        self.pool = TrajectoryPool(batch, (c.in_channels, c.image_size, c.image_size), gen, device, lockstep=False)
        self.histogram = StepHistogram(self.grid_steps, schedule.num_timesteps)
        self.nfe = 0
        self.started = False

    def update(self, lr: float) -> float:
        """One DSD update at learning rate `lr`; returns its loss (nan if skipped for a non-finite loss)."""
        if not self.started:
            self.nfe += self.pool.start_stage(self.grid_steps, self.schedule.num_timesteps, self.teacher,
                                              self.schedule, self.prediction, clip_x0=True)
            self.started = True
        pool, k = self.pool, self.pool.k
        t, t_mid, t_next = pool.pair_timesteps()
        res = dsd_pair_loss(self.student, self.teacher, pool.x, t, t_mid, t_next, self.schedule, self.prediction)
        self.nfe += 2 * len(k)
        loss = float(res.loss.detach())
        if torch.isfinite(res.loss):
            for group in self.opt.param_groups:
                group["lr"] = lr
            self.opt.zero_grad(set_to_none=True)
            self.scaler.step(res.loss, self.model.parameters(), self.opt, self.grad_clip)
            self.histogram.add(t.tolist())
        pool.continue_from(res.x_next, pool.non_finite(res.x_next))
        return loss

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        opt_tensors, opt_meta = optimizer_state(self.opt)
        tensors = {**prefixed("sd_optim", opt_tensors), **prefixed("sd_pool", self.pool.state())}
        return tensors, {"optimizer": opt_meta, "histogram": self.histogram.to_dict(), "nfe": self.nfe,
                         "started": self.started}

    def load(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        restore_optimizer(self.opt, unprefixed("sd_optim", tensors), meta["optimizer"])
        self.histogram.load(meta["histogram"])
        self.nfe, self.started = meta["nfe"], meta["started"]
        if self.started:
            self.pool.load(unprefixed("sd_pool", tensors))
