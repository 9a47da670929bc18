import math

import numpy as np
import pytest
import torch

from dsd_core.errors import DsdError
from dsd_core.schedule import NoiseSchedule
from dsd_core.timesteps import ddim_timesteps, step_pairs


def test_linear_schedule_values():
    s = NoiseSchedule("linear")
    betas = np.linspace(1e-4, 0.02, 1000)
    assert s.alpha_bar(0).item() == pytest.approx(1 - 1e-4, abs=1e-12)
    assert s.alpha_bar(999).item() == pytest.approx(np.prod(1 - betas), rel=1e-10)
    assert s.alpha_bar(999).item() == pytest.approx(4.036e-5, rel=1e-3)
    assert s.alpha_bar(-1).item() == 1.0  # clean data: where the last DDIM step lands


def test_cosine_schedule_values():
    s = NoiseSchedule("cosine")
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert s.alpha_bar(499).item() == pytest.approx(f(0.5) / f(0.0), rel=1e-9)
    ab = s.alpha_bar(torch.arange(1000))
    assert torch.all(ab[1:] < ab[:-1])


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_log_snr_decreasing_and_consistent(name):
    s = NoiseSchedule(name)
    t = torch.arange(1000)
    lam = s.log_snr(t)
    assert torch.all(lam[1:] < lam[:-1])
    ab = s.alpha_bar(t)
    torch.testing.assert_close(torch.sigmoid(lam), ab, rtol=1e-9, atol=1e-12)
    alpha, sigma = s.alpha_sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones(1000, dtype=torch.float64))


def test_trailing_grid_examples():
    assert ddim_timesteps(8) == [999, 874, 749, 624, 499, 374, 249, 124]
    assert ddim_timesteps(1) == [999]
    assert ddim_timesteps(2) == [999, 499]
    assert ddim_timesteps(1000) == list(range(999, -1, -1))


@pytest.mark.parametrize("n", [2, 4, 8, 16, 32, 64])
def test_halved_trailing_grid_is_subset(n):
    fine, coarse = ddim_timesteps(2 * n), ddim_timesteps(n)
    assert fine[::2] == coarse


def test_leading_grid_matches_diffusers_default():
    assert ddim_timesteps(8, spacing="leading") == [875, 750, 625, 500, 375, 250, 125, 0]


def test_step_pairs_end_on_clean_data():
    pairs = step_pairs(4)
    assert pairs == [(999, 749), (749, 499), (499, 249), (249, -1)]


@pytest.mark.parametrize("bad", [0, -3, 1001])
def test_impossible_step_counts(bad):
    with pytest.raises(DsdError, match="step count"):
        ddim_timesteps(bad)


def test_unknown_names():
    with pytest.raises(DsdError, match="noise schedule"):
        NoiseSchedule("sigmoid")
    with pytest.raises(DsdError, match="spacing"):
        ddim_timesteps(4, spacing="middle")
    with pytest.raises(DsdError, match="out of range"):
        NoiseSchedule().alpha_bar(1000)
