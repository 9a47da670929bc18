"""Noise schedules of a variance-preserving diffusion and the DDIM timestep grids walked on them.

A schedule is a table of ᾱ(t) for t = 0 … T−1. The extra point t = −1 stands for clean data (ᾱ = 1): it is
where the last DDIM step lands, as in diffusers with `set_alpha_to_one=True`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import DsdError
from .limits import MAX_TIMESTEPS, size

SCHEDULE_NAMES = ("linear", "cosine", "scaled_linear")
DEFAULT_BETAS = (1e-4, 0.02)


def linear_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """The DDPM schedule (Ho et al. 2020): β rises linearly."""
    return np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """The cosine schedule (Nichol & Dhariwal 2021): ᾱ(t) ∝ cos²(((t/T)+s)/(1+s)·π/2), β capped at max_beta."""

    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    t = np.arange(num_timesteps, dtype=np.float64)
    betas = np.array([1 - f((i + 1) / num_timesteps) / f(i / num_timesteps) for i in t])
    return np.minimum(betas, max_beta)


@dataclass(frozen=True)
class NoiseSchedule:
    """ᾱ(t) of a named schedule, with α, σ and logSNR derived from it."""

    name: str = "linear"
    num_timesteps: int = 1000
    beta_start: float = DEFAULT_BETAS[0]  # linear and scaled_linear (Stable Diffusion's: √β linear) only
    beta_end: float = DEFAULT_BETAS[1]

    def __post_init__(self) -> None:
        if self.name not in SCHEDULE_NAMES:
            raise DsdError(f"unknown noise schedule {self.name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")
        # checked here, not only where files are read: the table below is allocated by this number
        size("the schedule's num_timesteps", self.num_timesteps, MAX_TIMESTEPS)
        if not all(isinstance(b, (int, float)) and 0 < b < 1 for b in (self.beta_start, self.beta_end)):
            raise DsdError(f"the schedule's beta_start and beta_end must be numbers in (0, 1), got "
                           f"{self.beta_start!r} and {self.beta_end!r}")
        if self.name == "linear":
            betas = linear_betas(self.num_timesteps, self.beta_start, self.beta_end)
        elif self.name == "scaled_linear":
            betas = linear_betas(self.num_timesteps, self.beta_start**0.5, self.beta_end**0.5) ** 2
        else:
            betas = cosine_betas(self.num_timesteps)
        # Index 0 of the padded table is t = −1 (clean data, ᾱ = 1); index t+1 is timestep t.
        padded = np.concatenate([[1.0], np.cumprod(1.0 - betas)])
        object.__setattr__(self, "_alpha_bar", torch.from_numpy(padded))

    def to_dict(self) -> dict:
        d = {"name": self.name, "num_timesteps": self.num_timesteps}
        if (self.beta_start, self.beta_end) != DEFAULT_BETAS:  # checkpoints of the default schedule stay as they were
            d.update(beta_start=self.beta_start, beta_end=self.beta_end)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseSchedule":
        betas = {k: float(d[k]) for k in ("beta_start", "beta_end") if k in d}
        return cls(name=d["name"], num_timesteps=int(d["num_timesteps"]), **betas)

    def alpha_bar(self, t: torch.Tensor | int) -> torch.Tensor:
        """ᾱ at integer timesteps t ∈ [−1, T−1] (float64; cast where used)."""
        t = torch.as_tensor(t, dtype=torch.long)
        if bool(((t < -1) | (t >= self.num_timesteps)).any()):
            raise DsdError(f"timestep out of range [-1, {self.num_timesteps - 1}]")
        return self._alpha_bar.to(t.device)[t + 1]

    def alpha_sigma(self, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        ab = self.alpha_bar(t)
        return ab.sqrt(), (1 - ab).sqrt()

    def log_snr(self, t: torch.Tensor | int) -> torch.Tensor:
        """log(ᾱ / (1 − ᾱ)); +inf at t = −1."""
        ab = self.alpha_bar(t)
        return torch.log(ab) - torch.log1p(-ab)
