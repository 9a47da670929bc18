"""DPM-Solver++ (2M, 3M) and UniPC against closed forms, without diffusers: a perfect model of one point lands
on it, a Gaussian's exact ODE is followed more closely than by DDIM, one network evaluation per step, and the
orders each step count can hold (3M at 2 steps is DDIM, as in diffusers)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from dsd_core.checkpoint import LoadedModel
from dsd_core.ddim import ddim_sample, target_for
from dsd_core.errors import DsdError
from dsd_core.models import UNet
from dsd_core.nfe import NFECounter
from dsd_core.sampling import sample
from dsd_core.schedule import NoiseSchedule
from dsd_core.solvers import solver_sample
from dsd_core.solvers_plan import SAMPLERS, check_sampler, dpm_orders, orders, unipc_orders
from dsd_core.timesteps import step_pairs

from .conftest import TINY

S = NoiseSchedule("linear")
SOLVERS = ("dpm++2m", "dpm++3m", "unipc")


def _oracle(x0_of, kind):
    """A denoiser whose data prediction at (x_t, t) is x0_of(x_t, α_t, σ_t), output as a `kind` model."""

    def model(x_t, t):
        alpha, sigma = (v.view(-1, 1, 1, 1) for v in S.alpha_sigma(t))
        x0 = x0_of(x_t, alpha, sigma)
        return target_for(kind, x0, (x_t - alpha * x0) / sigma, t, S)

    return model


@pytest.mark.parametrize("sampler", SOLVERS)
@pytest.mark.parametrize("kind", ["eps", "x0", "v"])
@pytest.mark.parametrize("steps", [1, 2, 3, 5, 8, 20])
def test_perfect_model_of_one_point_lands_on_it(sampler, kind, steps):
    x_star = torch.linspace(-1, 1, 64, dtype=torch.float64).view(1, 1, 8, 8)
    noise = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    out = solver_sample(sampler, _oracle(lambda x, a, s: x_star.expand_as(x), kind), noise, step_pairs(steps), S, kind)
    torch.testing.assert_close(out, x_star.expand_as(out), rtol=0, atol=1e-9)


def test_higher_order_follows_a_gaussians_exact_ode_more_closely_than_ddim():
    """Data N(μ, s²): the ideal x0̂ is linear in x_t and the probability-flow ODE keeps u = (x_t − α_t·μ)/√(α_t²s² +
    σ_t²) fixed. At the last grid point before clean data, 8 steps of each solver are over twice as close as DDIM."""
    mu, s = 0.3, 0.5
    model = _oracle(lambda x, a, sg: mu + a * s * s / (a * a * s * s + sg * sg) * (x - a * mu), "eps")
    noise = torch.randn(64, 1, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pairs = step_pairs(8)
    a_T, s_T = (float(v) for v in S.alpha_sigma(pairs[0][0]))
    a, sg = (float(v) for v in S.alpha_sigma(pairs[-1][0]))
    exact = a * mu + math.sqrt(a * a * s * s + sg * sg) * (noise - a_T * mu) / math.sqrt(a_T**2 * s * s + s_T**2)

    def error(sampler: str) -> float:
        seen = {}
        solver_sample(sampler, model, noise, pairs, S, "eps", callback=lambda d: seen.__setitem__(d["i"], d["x"]))
        return float((seen[len(pairs) - 2] - exact).abs().max())

    ddim = error("ddim")  # 0.197; 2M 0.066, 3M 0.050, UniPC 0.043
    assert all(error(name) < 0.5 * ddim for name in SOLVERS)
    assert error("unipc") < error("dpm++2m")  # the corrector helps


def test_orders_per_step_follow_diffusers():
    assert dpm_orders(1, 2) == [1] and dpm_orders(2, 3) == [1, 1]  # 3M at 2 steps: DDIM
    assert dpm_orders(3, 3) == [1, 2, 1] and dpm_orders(4, 3) == [1, 2, 2, 1]  # 3M at 4 steps: 2M
    assert dpm_orders(5, 3) == [1, 2, 3, 2, 1]
    assert dpm_orders(8, 2) == [1] + [2] * 6 + [1]
    assert dpm_orders(20, 3) == [1, 2] + [3] * 17 + [1]  # from 15 steps the second-to-last stays third order
    assert dpm_orders(10, 3, lower_order_final=False) == [1, 2] + [3] * 7 + [1]
    assert unipc_orders(1) == [1] and unipc_orders(2) == [1, 1] and unipc_orders(5) == [1, 2, 2, 2, 1]
    assert orders("ddim", 4) == [1] * 4 and orders("unipc", 3) == [1, 2, 1]


def _fake(x, t):
    """A deterministic model that depends on x and t, so that every step matters."""
    g = torch.Generator().manual_seed(int(t[0]))
    return torch.randn(x.shape, generator=g, dtype=x.dtype) + 0.2 * torch.sin(3 * x)


def test_step_counts_the_order_cannot_fill_fall_back_as_diffusers_does():
    noise = torch.randn(3, 1, 8, 8, dtype=torch.float64)

    def walk(sampler, steps):
        return solver_sample(sampler, _fake, noise, step_pairs(steps), S, "eps")

    for steps in (1, 2):  # every multistep solver is first order here: DDIM, to float64 rounding
        for name in SOLVERS:
            torch.testing.assert_close(walk(name, steps), walk("ddim", steps), rtol=1e-12, atol=1e-12)
    assert torch.equal(walk("dpm++3m", 4), walk("dpm++2m", 4))
    assert not torch.allclose(walk("dpm++3m", 5), walk("dpm++2m", 5))
    assert not torch.allclose(walk("unipc", 3), walk("dpm++2m", 3))  # the corrector acts from 3 steps


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("steps", [1, 2, 5, 8])
def test_one_network_evaluation_per_step(sampler, steps):
    counter = NFECounter()
    solver_sample(sampler, counter.wrap(_fake), torch.randn(4, 1, 8, 8), step_pairs(steps), S, "v")
    assert counter.per_sample(4) == steps


def test_clipping_clamps_every_steps_x0_estimate():
    noise = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    far = _oracle(lambda x, a, s: torch.full_like(x, 3.0), "x0")
    for sampler in SOLVERS:
        clipped = solver_sample(sampler, far, noise, step_pairs(6), S, "x0", clip_x0=True)
        torch.testing.assert_close(clipped, torch.ones_like(clipped), rtol=0, atol=1e-12)
        assert float(solver_sample(sampler, far, noise, step_pairs(6), S, "x0").min()) == pytest.approx(3.0)


def test_ddim_through_the_dispatch_is_ddim_sample():
    noise = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    pairs = step_pairs(6)
    assert torch.equal(solver_sample("ddim", _fake, noise, pairs, S, "eps", True),
                       ddim_sample(_fake, noise, pairs, S, "eps", True))


def test_unknown_sampler_is_a_one_line_error():
    assert check_sampler(None) == "ddim"
    with pytest.raises(DsdError, match="unknown sampler 'euler'; choose one of ddim, dpm"):
        check_sampler("euler")
    with pytest.raises(DsdError, match="unknown sampler"):
        sample(LoadedModel(UNet(TINY), S, "eps"), 2, num=1, sampler="euler")


def test_sampling_a_model_with_each_solver_and_guidance():
    """Through `sampling.sample`: the batch does not change the images, guidance costs two evaluations a step."""
    torch.manual_seed(1)
    model = UNet(dataclasses.replace(TINY, num_classes=3))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    loaded = LoadedModel(model.eval(), S, "v")
    classes = torch.tensor([0, 1, 2, 0, 1])
    ddim = sample(loaded, 5, num=5, classes=classes, guidance=3.0)
    for sampler in SOLVERS:
        counter = NFECounter()
        a = sample(loaded, 5, num=5, classes=classes, guidance=3.0, sampler=sampler, counter=counter)
        b = sample(loaded, 5, num=5, batch=2, classes=classes, guidance=3.0, sampler=sampler)
        assert counter.per_sample(5) == 10
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
        assert (a - ddim).abs().max() > 1e-3
