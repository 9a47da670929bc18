"""Our DDIM against diffusers' DDIMScheduler on the same model outputs (runs where diffusers is installed)."""

import pytest
import torch

from dsd_core.ddim import ddim_step
from dsd_core.schedule import NoiseSchedule
from dsd_core.timesteps import ddim_timesteps, step_pairs

diffusers = pytest.importorskip("diffusers")

KINDS = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


def _scheduler(kind="eps", spacing="trailing"):
    return diffusers.DDIMScheduler(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
        timestep_spacing=spacing, clip_sample=False, set_alpha_to_one=True, prediction_type=KINDS[kind],
    )


@pytest.mark.parametrize("steps", [1, 2, 4, 5, 8, 10, 16, 32, 50, 64])
@pytest.mark.parametrize("spacing", ["trailing", "leading"])
def test_same_timestep_grid(steps, spacing):
    sched = _scheduler(spacing=spacing)
    sched.set_timesteps(steps)
    assert ddim_timesteps(steps, spacing=spacing) == sched.timesteps.tolist()


def test_same_alpha_bar_to_float32_rounding():
    """diffusers stores ᾱ in float32 (a float32 linspace of β); ours is float64: equal to float32 rounding."""
    ours = NoiseSchedule("linear").alpha_bar(torch.arange(1000))
    torch.testing.assert_close(_scheduler().alphas_cumprod.double(), ours, rtol=2e-6, atol=1e-7)


def _float64_scheduler(kind: str) -> "diffusers.DDIMScheduler":
    """diffusers' scheduler with our float64 ᾱ: the walk below then compares the step formulas alone, in float64,
    so the result does not depend on which float32 kernels (AVX2, AVX-512, default) this CPU runs."""
    sched = _scheduler(kind)
    sched.alphas_cumprod = NoiseSchedule("linear").alpha_bar(torch.arange(1000))
    sched.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return sched


# Grids whose spacing 1000/N is an integer: there diffusers' step lands on the next grid point (it steps by
# 1000 // N), so both walks visit the same timesteps.
@pytest.mark.parametrize("steps", [1, 2, 4, 8, 10, 20, 50])
@pytest.mark.parametrize("kind", ["eps", "x0", "v"])
def test_same_walk_on_same_model_outputs(steps, kind):
    sched = _float64_scheduler(kind)
    sched.set_timesteps(steps)
    schedule = NoiseSchedule("linear")
    g = torch.Generator().manual_seed(steps)
    x_ours = x_theirs = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    for t, s in step_pairs(steps):
        pred = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
        tt = torch.full((3,), t)
        x_ours = ddim_step(pred, x_ours, tt, torch.full((3,), s), schedule, kind).prev_sample
        x_theirs = sched.step(pred, t, x_theirs, eta=0.0).prev_sample
        assert x_ours.dtype == x_theirs.dtype == torch.float64
        # float64 on both sides: agreement to ~1e-12 relative; 1e-9 leaves room for ε-walks from t = 999, which
        # amplify values ~150× (1/α), and still fails on any error in a formula
        torch.testing.assert_close(x_ours, x_theirs, rtol=1e-9, atol=1e-9)
