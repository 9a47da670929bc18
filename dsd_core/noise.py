"""The initial noise of every sampler, from numpy alone, so torch and onnxruntime paths draw the same."""

from __future__ import annotations

import numpy as np


class NoiseStream:
    """Standard normals from numpy's PCG64 (float64, cast to float32), drawn one batch at a time.

    PCG64's normals are one stream whatever the sizes of the draws, so image i gets the same noise whether the
    images come in one draw or in batches of any size: sampling holds one batch of noise, never all of `--num`
    (`tests/test_reliability_memory.py` checks that the stream is today's up-front draw, bit for bit)."""

    def __init__(self, seed: int, shape: tuple[int, ...]):
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.shape = tuple(shape)

    def draw(self, n: int) -> np.ndarray:
        """The next `n` images' noise, (n, *shape) float32."""
        return self.rng.standard_normal((n, *self.shape)).astype(np.float32)


def initial_noise(seed: int, num: int, shape: tuple[int, ...]) -> np.ndarray:
    """The noise of the first `num` images of a seed, all at once (fixed example inputs, small caches)."""
    return NoiseStream(seed, shape).draw(num)
