"""The DDIM step against closed forms: exact conversions, a perfect model of one data point, and the
self-consistency that DSD relies on (a constant x0 estimate makes two steps equal one)."""

import pytest
import torch

from dsd_core.ddim import add_noise, ddim_sample, ddim_step, pred_to_x0_eps, target_for
from dsd_core.schedule import NoiseSchedule
from dsd_core.timesteps import step_pairs

S = NoiseSchedule("linear")


def _batch(b=6):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(b, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(b, 1, 8, 8, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (b,), generator=g)
    return x0, eps, t


@pytest.mark.parametrize("kind", ["eps", "x0", "v"])
def test_conversions_are_exact(kind):
    x0, eps, t = _batch()
    x_t = add_noise(x0, eps, t, S)
    got_x0, got_eps = pred_to_x0_eps(target_for(kind, x0, eps, t, S), x_t, t, S, kind)
    torch.testing.assert_close(got_x0, x0, rtol=0, atol=1e-9)
    torch.testing.assert_close(got_eps, eps, rtol=0, atol=1e-9)


def _oracle(x_star, kind):
    """The ideal denoiser of a data set with one point x*: it knows x0 = x* and so ε exactly."""

    def model(x_t, t):
        alpha, sigma = S.alpha_sigma(t)
        alpha, sigma = alpha.view(-1, 1, 1, 1), sigma.view(-1, 1, 1, 1)
        eps = (x_t - alpha * x_star) / sigma
        return target_for(kind, x_star.expand_as(x_t), eps, t, S)

    return model


@pytest.mark.parametrize("kind", ["eps", "x0", "v"])
@pytest.mark.parametrize("steps", [1, 2, 8, 64])
def test_perfect_model_lands_on_the_data_point(kind, steps):
    x_star = torch.linspace(-1, 1, 64, dtype=torch.float64).view(1, 1, 8, 8)
    noise = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    out = ddim_sample(_oracle(x_star, kind), noise, step_pairs(steps), S, kind)
    torch.testing.assert_close(out, x_star.expand_as(out), rtol=0, atol=1e-9)


def test_per_sample_timesteps_equal_separate_steps():
    x0, eps, t = _batch()
    x_t = add_noise(x0, eps, t, S)
    s = (t - 137).clamp(min=-1)
    pred = torch.randn_like(x_t)
    batched = ddim_step(pred, x_t, t, s, S).prev_sample
    for i in range(len(t)):
        one = ddim_step(pred[i : i + 1], x_t[i : i + 1], t[i : i + 1], s[i : i + 1], S).prev_sample
        torch.testing.assert_close(batched[i : i + 1], one, rtol=0, atol=0)


def test_step_closed_form():
    x0, eps, t = _batch()
    s = (t // 2) - 1
    x_t = add_noise(x0, eps, t, S)
    out = ddim_step(eps, x_t, t, s, S)
    ab_s = S.alpha_bar(s).view(-1, 1, 1, 1)
    expected = ab_s.sqrt() * x0 + (1 - ab_s).sqrt() * eps
    torch.testing.assert_close(out.prev_sample, expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(out.pred_x0, x0, rtol=0, atol=1e-9)


def test_constant_x0_makes_two_steps_equal_one():
    x0, eps, _ = _batch()
    t, mid, end = torch.full((6,), 900), torch.full((6,), 500), torch.full((6,), 100)
    x_t = add_noise(x0, eps, t, S)
    one = ddim_step(x0, x_t, t, end, S, kind="x0").prev_sample
    half = ddim_step(x0, x_t, t, mid, S, kind="x0").prev_sample
    two = ddim_step(x0, half, mid, end, S, kind="x0").prev_sample
    torch.testing.assert_close(two, one, rtol=0, atol=1e-9)


def test_clipping_clamps_x0_and_keeps_the_step_consistent():
    x0, eps, t = _batch()
    x_t = add_noise(3 * x0, eps, t, S)  # data well outside [-1, 1]
    pred = target_for("eps", 3 * x0, eps, t, S)
    s = torch.full_like(t, -1)
    out = ddim_step(pred, x_t, t, s, S, clip_x0=True)
    assert out.pred_x0.abs().max() <= 1.0
    torch.testing.assert_close(out.prev_sample, out.pred_x0, rtol=0, atol=1e-9)  # s = -1 lands on x0
