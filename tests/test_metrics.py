import itertools

import numpy as np
import pytest

from dsd_core import metrics
from dsd_core.errors import DsdError
from dsd_core.metrics import density_coverage, fd, feature_stats, frechet_distance, precision_recall


def _rng(seed=0):
    return np.random.default_rng(seed)


def _random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.5 * np.eye(d)


def _brute_distances(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def _brute_radii(x, k):
    d = _brute_distances(x, x)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]


# --- Fréchet distance ---------------------------------------------------------------------------------------

def test_feature_stats_matches_numpy_cov():
    x = _rng().standard_normal((50, 4))
    mu, sigma = feature_stats(x)
    np.testing.assert_allclose(mu, x.mean(0), atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), atol=1e-12)
    _, s1 = feature_stats(x[:, :1])  # one feature still gives a 1×1 matrix
    assert s1.shape == (1, 1)


def test_fd_of_set_with_itself_is_zero():
    x = _rng().standard_normal((500, 16)) * 3.0 + 1.0
    assert abs(fd(x, x)) < 1e-6


def test_fd_diagonal_closed_form():
    rng = _rng(1)
    d = 8
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    a, b = rng.uniform(0.1, 4.0, d), rng.uniform(0.1, 4.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, abs=1e-8)


def test_fd_commuting_non_diagonal():
    # S2 = S1², so (S1 S2)^½ = S1^{3/2}: the trace is Σ λ^{3/2} over S1's eigenvalues.
    rng = _rng(2)
    d = 6
    s1 = _random_spd(rng, d)
    s2 = s1 @ s1
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    lam = np.linalg.eigvalsh(s1)
    expected = np.sum((mu1 - mu2) ** 2) + lam.sum() + (lam ** 2).sum() - 2.0 * (lam ** 1.5).sum()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10, abs=1e-8)


def test_fd_2x2_non_commuting_analytic():
    # For a 2×2 M with non-negative eigenvalues, Tr √M = √(Tr M + 2√det M); M = S1 S2 need not be symmetric.
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[0.5, -0.3], [-0.3, 3.0]])
    assert not np.allclose(s1 @ s2, s2 @ s1)
    m = s1 @ s2
    tr_root = np.sqrt(np.trace(m) + 2.0 * np.sqrt(np.linalg.det(m)))
    mu1, mu2 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    expected = 8.0 + np.trace(s1) + np.trace(s2) - 2.0 * tr_root
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, abs=1e-10)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, abs=1e-10)  # symmetric


def test_fd_singular_covariance_is_finite_and_non_negative():
    x = _rng(3).standard_normal((5, 20))  # fewer samples than features: rank-deficient covariance
    value = fd(x, x)
    assert np.isfinite(value) and 0.0 <= value < 1e-6


def test_fd_grows_with_shift():
    x = _rng(4).standard_normal((400, 8))
    offsets = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]
    values = [fd(x, x + c) for c in offsets]
    assert all(b > a for a, b in itertools.pairwise(values))
    # a shift leaves the covariance as it is, so FD is exactly the squared mean shift
    np.testing.assert_allclose(values, [8 * c ** 2 for c in offsets], atol=1e-8)


def test_fd_grows_with_noise():
    rng = _rng(5)
    x = rng.standard_normal((400, 8))
    noise = rng.standard_normal(x.shape)
    values = [fd(x, x + s * noise) for s in [0.0, 0.1, 0.3, 0.6, 1.0, 2.0]]
    assert values[0] < 1e-6
    assert all(b > a for a, b in itertools.pairwise(values))


# --- precision / recall ---------------------------------------------------------------------------------------

def test_distance_blocks_match_brute_force():
    rng = _rng(6)
    a, b = rng.standard_normal((23, 5)), rng.standard_normal((17, 5))
    got = np.vstack([d for _, d in metrics._distance_blocks(a, b, batch_size=7)])
    np.testing.assert_allclose(got, _brute_distances(a, b), atol=1e-10)
    np.testing.assert_allclose(metrics._kth_nn_radii(a, 3, batch_size=4), _brute_radii(a, 3), atol=1e-10)


def test_precision_recall_identical_sets():
    x = _rng(7).standard_normal((300, 10))
    assert precision_recall(x, x, k=3) == (1.0, 1.0)


def test_precision_recall_matches_brute_force():
    rng = _rng(8)
    real, fake = rng.standard_normal((120, 4)), rng.standard_normal((90, 4)) * 1.5 + 0.5
    k = 3
    p_ref = (_brute_distances(fake, real) <= _brute_radii(real, k)[None, :]).any(1).mean()
    r_ref = (_brute_distances(real, fake) <= _brute_radii(fake, k)[None, :]).any(1).mean()
    p, r = precision_recall(real, fake, k=k)
    assert (p, r) == pytest.approx((p_ref, r_ref), abs=1e-12)
    assert 0.0 < p < 1.0 and 0.0 < r < 1.0


def test_precision_recall_mode_collapse():
    real = _rng(9).standard_normal((200, 6))
    fake = np.repeat(real[:1], 200, axis=0)
    p, r = precision_recall(real, fake, k=3)
    assert p == 1.0
    assert r <= 0.05


def test_precision_recall_far_away_fake():
    rng = _rng(10)
    real = rng.standard_normal((200, 6))
    fake = rng.standard_normal((200, 6)) + 100.0
    p, r = precision_recall(real, fake, k=3)
    assert p == 0.0 and r == 0.0


# --- density / coverage ---------------------------------------------------------------------------------------

def test_density_coverage_identical_sets():
    x = _rng(11).standard_normal((300, 10))
    density, coverage = density_coverage(x, x, k=5)
    assert coverage == 1.0
    # each point lies in its own ball and in the balls of the (k-ish) points that count it as a neighbour
    assert 0.5 < density < 2.0


def test_density_coverage_matches_brute_force():
    rng = _rng(12)
    real, fake = rng.standard_normal((100, 3)), rng.standard_normal((80, 3)) + 0.7
    k = 5
    inside = _brute_distances(fake, real) <= _brute_radii(real, k)[None, :]
    density, coverage = density_coverage(real, fake, k=k)
    assert density == pytest.approx(inside.sum() / (k * len(fake)), abs=1e-12)
    assert coverage == pytest.approx(inside.any(0).mean(), abs=1e-12)


def test_density_coverage_far_away_and_collapsed():
    rng = _rng(13)
    real = rng.standard_normal((200, 4))
    assert density_coverage(real, rng.standard_normal((200, 4)) + 100.0) == (0.0, 0.0)
    _, coverage = density_coverage(real, np.repeat(real[:1], 50, axis=0), k=5)
    assert coverage <= 0.05


# --- bad input --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda x: fd(x[:1], x),                                  # fewer than 2 samples
    lambda x: fd(x, x[:, :3]),                               # mismatched dims
    lambda x: feature_stats(x[0]),                           # not 2-D
    lambda x: precision_recall(x, x, k=10),                  # k >= N
    lambda x: precision_recall(x, x[:3], k=3),               # k >= N of the fake set
    lambda x: precision_recall(x, x, k=0),                   # k < 1
    lambda x: density_coverage(x, x, k=10),                  # k >= N
    lambda x: density_coverage(x, x[:, :2]),                 # mismatched dims
    lambda x: fd(np.where(np.arange(10)[:, None] == 3, np.nan, x), x),  # non-finite
    lambda x: precision_recall(x, np.full_like(x, np.inf)),  # non-finite
    lambda x: frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)),  # shape mismatch
    lambda x: frechet_distance(np.zeros(2), np.eye(2) * np.nan, np.zeros(2), np.eye(2)),  # non-finite
])
def test_bad_inputs_raise(call):
    x = _rng(14).standard_normal((10, 4))
    with pytest.raises(DsdError):
        call(x)
