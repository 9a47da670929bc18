"""The initial noise of every sampler, from numpy alone, so torch and onnxruntime paths draw the same."""

from __future__ import annotations

import numpy as np


def initial_noise(seed: int, num: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normals from numpy's PCG64 (float64, cast to float32), drawn for all images up front so the
    batch size never changes which noise an image gets."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.standard_normal((num, *shape)).astype(np.float32)
