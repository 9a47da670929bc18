"""The torch modules that become ONNX graphs: the denoiser alone, and the whole N-step sampler unrolled.

The sampler calls `dsd_core.solvers.solver_sample` — DDIM (`ddim.ddim_sample`, the one DDIM implementation),
DPM-Solver++ 2M/3M or UniPC — and tracing unrolls its loop, so the graph holds N copies of the step with the
timesteps and coefficients baked in as constants (the multistep solvers' history is plain arithmetic between
network calls), while the network weights are stored once.
"""

from __future__ import annotations

import torch
from torch import nn

from dsd_core.checkpoint import LoadedModel
from dsd_core.guidance import guided_prediction
from dsd_core.solvers import solver_sample
from dsd_core.solvers_plan import check_sampler
from dsd_core.timesteps import step_pairs


class StepGraph(nn.Module):
    """(x, t[, class]) → the network's prediction (ε, x0 or v), for samplers written elsewhere."""

    def __init__(self, loaded: LoadedModel):
        super().__init__()
        self.model = loaded.model

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, t, class_labels)


class SamplerGraph(nn.Module):
    """noise[, class, guidance] → images in [0, 1]: exactly `dsd_core.sampling.sample`'s walk with `sampler`;
    a conditional model's graph mixes the conditional and null-class predictions with the per-sample
    guidance w (`dsd_core.guidance`), so every step evaluates the network on 2B images."""

    def __init__(self, loaded: LoadedModel, steps: int, spacing: str = "trailing", clip_x0: bool = True,
                 sampler: str = "ddim"):
        super().__init__()
        self.model = loaded.model
        self.schedule, self.prediction, self.clip_x0 = loaded.schedule, loaded.prediction, clip_x0
        self.sampler = check_sampler(sampler)
        self.pairs = step_pairs(steps, loaded.schedule.num_timesteps, spacing)

    def forward(self, noise: torch.Tensor, class_labels: torch.Tensor | None = None,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if guidance is None:
                return self.model(x, t, class_labels)
            return guided_prediction(self.model, x, t, class_labels, guidance, self.model.config.num_classes)

        x = solver_sample(self.sampler, denoiser, noise, self.pairs, self.schedule, self.prediction, self.clip_x0)
        return (x.clamp(-1, 1) + 1) / 2
