"""Sample-quality metrics between two feature sets (arrays of shape (N, D)), in numpy only.

- Fréchet distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local
  Nash Equilibrium", the FID formula) between Gaussians fitted to the two sets, and its standard error over
  the draw of the samples (a delete-a-group jackknife: one number says whether two FDs differ).
- Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
  Assessing Generative Models"): k-NN balls around each set estimate its support.
- Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models"):
  the same k-NN balls around the real set only, less fooled by outliers.

Fidelity (precision, density) and diversity (recall, coverage) are reported apart because a distilled
sampler can lose one without the other: mode collapse keeps precision high while recall falls.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .errors import DsdError

_BATCH = 1024  # rows of the distance matrix held at once: 1024 × 10k float64 is 80 MB


def _as_features(x, name: str) -> np.ndarray:
    """Checks one feature set: a finite 2-D float array with at least two rows."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DsdError(f"{name} must be a 2-D array (samples, features), got shape {x.shape}")
    if x.shape[0] < 2:
        raise DsdError(f"{name} needs at least 2 samples, got {x.shape[0]}")
    if x.shape[1] < 1:
        raise DsdError(f"{name} has no feature dimensions")
    if not np.all(np.isfinite(x)):
        raise DsdError(f"{name} contains non-finite values (NaN or inf)")
    return x


def _as_pair(a, b, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_features(a, names[0]), _as_features(b, names[1])
    if a.shape[1] != b.shape[1]:
        raise DsdError(f"feature dimensions differ: {names[0]} has {a.shape[1]}, {names[1]} has {b.shape[1]}")
    return a, b


def _check_k(k, n: int, name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DsdError(f"k must be a positive integer, got {k!r}")
    if k >= n:
        raise DsdError(f"k={k} needs more than k samples in {name}, which has {n}")
    return int(k)


def _distance_blocks(a: np.ndarray, b: np.ndarray, batch_size: int = _BATCH) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (start row, Euclidean distances of a[start:start+batch] to every row of b), so an N×M matrix
    never has to exist at once. Uses |x|² + |y|² − 2x·y, clipped at 0 against rounding."""
    b_sq = np.einsum("ij,ij->i", b, b)
    for start in range(0, a.shape[0], batch_size):
        block = a[start:start + batch_size]
        sq = np.einsum("ij,ij->i", block, block)[:, None] + b_sq[None, :] - 2.0 * (block @ b.T)
        yield start, np.sqrt(np.maximum(sq, 0.0))


def _kth_nn_radii(x: np.ndarray, k: int, batch_size: int = _BATCH) -> np.ndarray:
    """Distance from each row of x to its k-th nearest neighbour among the *other* rows (itself excluded)."""
    radii = np.empty(x.shape[0])
    for start, d in _distance_blocks(x, x, batch_size):
        rows = np.arange(d.shape[0])
        d[rows, start + rows] = np.inf  # exclude the point itself, even where a duplicate also sits at 0
        radii[start:start + d.shape[0]] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return radii


def _fraction_in_balls(points: np.ndarray, centres: np.ndarray, radii: np.ndarray,
                       batch_size: int = _BATCH) -> float:
    """Fraction of `points` within distance radii[j] (inclusive) of at least one centres[j]."""
    inside = 0
    for _, d in _distance_blocks(points, centres, batch_size):
        inside += int(np.count_nonzero((d <= radii[None, :]).any(axis=1)))
    return inside / points.shape[0]


def feature_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (rows are samples), the Gaussian fit that the Fréchet distance compares."""
    x = _as_features(feats, "feats")
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = xc.T @ xc / (x.shape[0] - 1)
    return mu, sigma


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance (negative rounding-noise eigenvalues taken as 0)."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, root1: np.ndarray | None = None) -> float:
    """Tr((S1 S2)^½) as Σ√λ of the symmetric PSD matrix √S1·S2·√S1 (same non-zero spectrum as S1 S2), so no
    complex parts appear, unlike a general matrix square root of the non-symmetric product. `root1`: √S1, when
    the caller already has it."""
    root1 = _sqrt_psd(s1) if root1 is None else root1
    m = root1 @ s2 @ root1
    lam = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sum(np.sqrt(np.maximum(lam, 0.0))))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||μ1−μ2||² + Tr(S1 + S2 − 2(S1 S2)^½): the Fréchet (2-Wasserstein²) distance between two Gaussians.
    eps·I is added to both covariances only if the plain computation is not finite. Never negative."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.ndim != 1 or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise DsdError(f"shapes do not match: mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, "
                       f"sigma2 {s2.shape}")
    if not all(np.all(np.isfinite(a)) for a in (mu1, mu2, s1, s2)):
        raise DsdError("means or covariances contain non-finite values (NaN or inf)")
    s1, s2 = (s1 + s1.T) / 2.0, (s2 + s2.T) / 2.0  # rounding can leave a covariance slightly asymmetric
    diff = mu1 - mu2
    try:
        tr_root = _trace_sqrt_product(s1, s2)
    except np.linalg.LinAlgError:
        tr_root = np.nan
    if not np.isfinite(tr_root):
        offset = eps * np.eye(d)
        try:
            tr_root = _trace_sqrt_product(s1 + offset, s2 + offset)
        except np.linalg.LinAlgError as exc:
            raise DsdError(f"Fréchet distance failed even with eps={eps}: {exc}") from exc
        s1, s2 = s1 + offset, s2 + offset
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_root)
    if not np.isfinite(value):
        raise DsdError("Fréchet distance is not finite; the features are too large or degenerate")
    return max(value, 0.0)


def fd(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID when the features are Inception's)."""
    a, b = _as_pair(feats_a, feats_b, ("feats_a", "feats_b"))
    return frechet_distance(*feature_stats(a), *feature_stats(b))


def fd_standard_error(real, fake, groups: int = 20, seed: int = 0) -> float:
    """How much FD(real, fake) moves with the draw of the `fake` samples: the delete-a-group jackknife standard
    error. The samples are split into `groups` random groups (one per sample below that); FD is recomputed
    without each group, and SE = √((G−1)/G · Σ(FD₋g − mean)²). The real set is held fixed, so this is the
    spread from sampling n images, not from the reference. Each replicate's statistics come from per-group
    sums, so the cost is one pass over the features plus G small eigen-decompositions."""
    real, fake = _as_pair(real, fake, ("real", "fake"))
    n = fake.shape[0]
    g = min(groups, n)
    if g < 2 or n - -(-n // g) < 2:
        raise DsdError(f"the FD's standard error needs at least 3 samples, got {n}")
    centre = fake.mean(axis=0)  # sums of centred rows keep the covariance accurate when the mean is large
    x = fake - centre
    mu_r, s_r = feature_stats(real)
    mu_r = mu_r - centre
    root_r, tr_r = _sqrt_psd((s_r + s_r.T) / 2.0), float(np.trace(s_r))
    group = np.random.default_rng(seed).permutation(n) % g
    sums = np.stack([x[group == j].sum(axis=0) for j in range(g)])
    outer = np.stack([x[group == j].T @ x[group == j] for j in range(g)])
    total_sum, total_outer = sums.sum(axis=0), outer.sum(axis=0)
    values = np.empty(g)
    for j in range(g):
        m = n - int(np.count_nonzero(group == j))
        mu = (total_sum - sums[j]) / m
        cov = (total_outer - outer[j] - m * np.outer(mu, mu)) / (m - 1)
        cov = (cov + cov.T) / 2.0
        diff = mu_r - mu
        values[j] = diff @ diff + tr_r + np.trace(cov) - 2.0 * _trace_sqrt_product(s_r, cov, root_r)
    if not np.all(np.isfinite(values)):
        raise DsdError("the FD's standard error is not finite; the features are too large or degenerate")
    return float(np.sqrt((g - 1) / g * np.sum((values - values.mean()) ** 2)))


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision/recall (Kynkäänniemi et al. 2019). Each point's ball has its k-th nearest neighbour
    distance within its own set as radius. Precision: fraction of fake points in some real ball (fidelity).
    Recall: fraction of real points in some fake ball (diversity). Both in [0, 1]."""
    real, fake = _as_pair(real, fake, ("real", "fake"))
    k = _check_k(k, real.shape[0], "real")
    _check_k(k, fake.shape[0], "fake")
    precision = _fraction_in_balls(fake, real, _kth_nn_radii(real, k))
    recall = _fraction_in_balls(real, fake, _kth_nn_radii(fake, k))
    return precision, recall


def density_coverage(real, fake, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), from k-NN balls around the real points only, which makes them
    robust to fake outliers. Density: mean number of real balls holding each fake point, divided by k (≈1 when
    the distributions match, can exceed 1). Coverage: fraction of real balls holding at least one fake point."""
    real, fake = _as_pair(real, fake, ("real", "fake"))
    k = _check_k(k, real.shape[0], "real")
    radii = _kth_nn_radii(real, k)
    hits = 0
    covered = np.zeros(real.shape[0], dtype=bool)
    for _, d in _distance_blocks(fake, real):
        inside = d <= radii[None, :]
        hits += int(np.count_nonzero(inside))
        covered |= inside.any(axis=0)
    density = hits / (k * fake.shape[0])
    coverage = float(np.count_nonzero(covered)) / real.shape[0]
    return density, coverage
