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

from .errors import DsdError, OptionError

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


def read_image_folder(path: str | Path, size: int | None = None, channels: int | None = None) -> np.ndarray:
    """All images under `path` (recursively, sorted by path) as uint8 (N, size, size, C), pixel values exact.

    `size` defaults to the first image's width (other sizes are resized to square with Lanczos); `channels`
    (1 or 3) defaults to 1 if every image is greyscale, else 3. Unreadable files are skipped with a warning.
    """
    root = Path(path)
    if not root.is_dir():
        raise DsdError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    others = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES)
    if others:
        warnings.warn(f"ignoring {len(others)} file(s) that are not images in {root}, e.g. {others[0].name}",
                      stacklevel=2)
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
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[..., None] if channels == 1 else a)
    return np.stack(arrays)


def uint8_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) → float32 (N, C, H, W) in [−1, 1]; the inverse of `images.to_uint8`."""
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def load_image_folder(path: str | Path, size: int | None = None, channels: int | None = None) -> torch.Tensor:
    """`read_image_folder` as training data: (N, C, size, size) in [−1, 1]."""
    return uint8_to_tensor(read_image_folder(path, size, channels))


def load_dataset(spec: str, size: int | None = None) -> tuple[torch.Tensor, str]:
    """Images named on the command line: `digits` (its train split) or an image folder; and a description."""
    if spec == "digits":
        if size not in (None, 8):
            raise OptionError("the digits are 8×8; {image_size} does not apply")
        return load_digits("train")[0], "digits:train"
    return load_image_folder(spec, size), str(Path(spec).resolve())


def load_labels(spec: str) -> torch.Tensor:
    """Class labels of the images `load_dataset(spec)` returns; only the digits carry them."""
    if spec != "digits":
        raise DsdError(f"class labels exist only for the digits, not for {spec!r}; train {spec!r} unconditionally")
    return load_digits("train")[1]
