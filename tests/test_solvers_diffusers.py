"""DPM-Solver++ (2M, 3M) and UniPC against diffusers' DPMSolverMultistepScheduler and UniPCMultistepScheduler
on the same model outputs, step by step, in float64 (runs where diffusers is installed)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.overrides import TorchFunctionMode

from dsd_core.schedule import NoiseSchedule
from dsd_core.solvers_dpm import dpm_solver_pp_sample
from dsd_core.solvers_unipc import unipc_sample
from dsd_core.timesteps import step_pairs

diffusers = pytest.importorskip("diffusers")
# diffusers' set_timesteps calls np.array on a torch tensor, which numpy 2 warns about; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

KINDS = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
S = NoiseSchedule("linear")
STEPS = [1, 2, 3, 4, 5, 6, 8, 10, 14, 15, 16, 20, 25, 50]


class KeepFloat64(TorchFunctionMode):
    """DPMSolverMultistepScheduler.step upcasts the sample with `.to(torch.float32)` (a help for half-precision
    models) — for a float64 walk a downcast. Inside this mode that cast keeps float64, so the walk compares the
    update rules alone."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.to:
            args = tuple(torch.float64 if a is torch.float32 else a for a in args)
            if kwargs.get("dtype") is torch.float32:
                kwargs["dtype"] = torch.float64
        return func(*args, **kwargs)


def _float64_scheduler(cls, kind: str, steps: int, **config):
    """diffusers' scheduler (trailing grid; no thresholding, its default) given our float64 ᾱ after set_timesteps,
    and its σ table (which set_timesteps stores in float32, and which the steps read) rebuilt from it."""
    sched = cls(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                prediction_type=KINDS[kind], timestep_spacing="trailing", thresholding=False, **config)
    sched.set_timesteps(steps)
    sched.alphas_cumprod = S.alpha_bar(torch.arange(1000))
    ab = sched.alphas_cumprod[sched.timesteps]
    sched.sigmas = torch.cat([((1 - ab) / ab).sqrt(), torch.zeros(1, dtype=torch.float64)])  # "zero": σ = 0 last
    return sched


def _fake(x, t):
    """Deterministic model outputs that depend on x and t, so each step's input matters."""
    g = torch.Generator().manual_seed(int(t[0]))
    return torch.randn(x.shape, generator=g, dtype=x.dtype) + 0.2 * torch.sin(3 * x)


def _compare(sched, ours, steps: int) -> float:
    """Walk diffusers' scheduler and ours from the same noise; every step's sample must agree. The largest
    difference, relative to the sample's scale (ε walks from t = 999 reach |x| ~ 100: 1/α)."""
    assert sched.timesteps.tolist() == [t for t, _ in step_pairs(steps)]
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(steps), dtype=torch.float64)
    seen = []
    ours(_fake, noise, step_pairs(steps), callback=lambda d: seen.append(d["x"]))
    x, worst = noise, 0.0
    for t, x_ours in zip(sched.timesteps, seen):
        with KeepFloat64():
            x = sched.step(_fake(x, t.view(1)), t, x).prev_sample
        assert x.dtype == x_ours.dtype == torch.float64
        worst = max(worst, float((x - x_ours).abs().max() / x.abs().max().clamp(min=1)))
        torch.testing.assert_close(x_ours, x, rtol=1e-9, atol=1e-9)  # float64: ~1e-15 seen; the issue asks 1e-6
    return worst


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("kind", ["eps", "x0", "v"])
@pytest.mark.parametrize("order", [2, 3])
def test_dpm_solver_pp_matches_diffusers(order, kind, steps):
    sched = _float64_scheduler(diffusers.DPMSolverMultistepScheduler, kind, steps, algorithm_type="dpmsolver++",
                               solver_order=order, solver_type="midpoint", lower_order_final=True)
    assert _compare(sched, partial(dpm_solver_pp_sample, schedule=S, kind=kind, order=order), steps) < 1e-12


@pytest.mark.parametrize("steps", [5, 10])
def test_dpm_solver_pp_without_lower_order_final_matches_diffusers(steps):
    sched = _float64_scheduler(diffusers.DPMSolverMultistepScheduler, "eps", steps, algorithm_type="dpmsolver++",
                               solver_order=3, lower_order_final=False)
    walk = partial(dpm_solver_pp_sample, schedule=S, kind="eps", order=3, lower_order_final=False)
    assert _compare(sched, walk, steps) < 1e-12


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("kind", ["eps", "x0", "v"])
def test_unipc_matches_diffusers(kind, steps):
    sched = _float64_scheduler(diffusers.UniPCMultistepScheduler, kind, steps, solver_order=2, solver_type="bh2",
                               predict_x0=True, lower_order_final=True, disable_corrector=[])
    assert _compare(sched, partial(unipc_sample, schedule=S, kind=kind), steps) < 1e-12


def test_the_float32_cast_is_what_the_mode_removes():
    """Without KeepFloat64, diffusers' DPM-Solver++ walk is float32 inside: the mode is needed, not cosmetic."""
    sched = _float64_scheduler(diffusers.DPMSolverMultistepScheduler, "eps", 8, algorithm_type="dpmsolver++")
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    t = sched.timesteps[0]
    plain = sched.step(_fake(x, t.view(1)), t, x).prev_sample
    sched = _float64_scheduler(diffusers.DPMSolverMultistepScheduler, "eps", 8, algorithm_type="dpmsolver++")
    with KeepFloat64():
        kept = sched.step(_fake(x, t.view(1)), t, x).prev_sample
    assert 0 < float((plain - kept).abs().max() / kept.abs().max()) < 1e-5
