"""Training data: the shipped 8×8 handwritten digits, and a folder of images.

Images come out as float32 tensors (N, C, H, W) in [−1, 1]. The digits are the UCI "Optical Recognition of
Handwritten Digits" set (Alpaydin & Kaynak; CC BY 4.0), the copy scikit-learn ships, stored in
`assets/digits.npz` by `scripts/make_digits.py`. Its train/test split is fixed, so that a model trained on
`train` can be judged against the held-out `test` images.
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import DsdError

DIGITS_TEST_SIZE = 297  # 1797 = 1500 train + 297 test
DIGITS_SPLIT_SEED = 0
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def load_digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """(images in [−1, 1] shaped (N, 1, 8, 8), labels) of the `train`, `test` or `all` split."""
    with resources.files("dsd_core.assets").joinpath("digits.npz").open("rb") as f:
        arrays = np.load(f)
        images, labels = arrays["images"], arrays["labels"]
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(images))
    picks = {"train": order[DIGITS_TEST_SIZE:], "test": order[:DIGITS_TEST_SIZE], "all": np.arange(len(images))}
    if split not in picks:
        raise DsdError(f"unknown digits split {split!r}; choose train, test or all")
    idx = np.sort(picks[split])
    x = torch.from_numpy(images[idx].astype(np.float32) / 16.0 * 2.0 - 1.0)[:, None]
    return x, torch.from_numpy(labels[idx].astype(np.int64))


def load_image_folder(path: str | Path, size: int | None = None, channels: int | None = None) -> torch.Tensor:
    """All images under `path` (recursively), as (N, C, size, size) in [−1, 1].

    `size` defaults to the first image's width (images are resized to square with Lanczos); `channels`
    (1 or 3) defaults to 1 if every image is greyscale, else 3. Unreadable files are skipped with a warning.
    """
    root = Path(path)
    if not root.is_dir():
        raise DsdError(f"data folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    images: list[Image.Image] = []
    for file in files:
        try:
            with Image.open(file) as im:
                im.load()
                images.append(im.copy())
        except (UnidentifiedImageError, OSError) as exc:
            warnings.warn(f"skipping unreadable image {file}: {exc}", stacklevel=2)
    if not images:
        raise DsdError(f"no readable images (png, jpg, …) in {root}")
    if channels is None:
        channels = 1 if all(im.mode in ("L", "1", "I", "I;16", "LA") for im in images) else 3
    if channels not in (1, 3):
        raise DsdError(f"channels must be 1 or 3, got {channels}")
    size = size or images[0].width
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for im in images:
        im = im.convert(mode)
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.LANCZOS)
        a = np.asarray(im, dtype=np.float32)
        arrays.append(a[None] if channels == 1 else a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays) / 127.5 - 1.0)


def load_dataset(spec: str, size: int | None = None) -> tuple[torch.Tensor, str]:
    """Images named on the command line: `digits` (its train split) or an image folder; and a description."""
    if spec == "digits":
        if size not in (None, 8):
            raise DsdError("the digits are 8×8; --image-size does not apply")
        return load_digits("train")[0], "digits:train"
    return load_image_folder(spec, size), str(Path(spec).resolve())
