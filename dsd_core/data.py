"""Training data: the shipped 8×8 handwritten digits, and a folder of images.

Images come out as float32 tensors (N, C, H, W) in [−1, 1]. The digits are the UCI "Optical Recognition of
Handwritten Digits" set (Alpaydin & Kaynak; CC BY 4.0), the copy scikit-learn ships, stored in
`assets/digits.npz` by `scripts/make_digits.py`. Its train/test split is fixed, so that a model trained on
`train` can be judged against the held-out `test` images.

The emoji (`emoji`: 32×32 RGB, `emoji16`: 16×16) are the Noto Emoji (Apache-2.0) and Twemoji (CC-BY-4.0) images
of the npm packages emoji-datasource-google and -twitter, composited on white and labelled by category
(`classes.EMOJI_CATEGORIES`), stored in `assets/emoji32.npz` and `emoji16.npz` by `scripts/make_emoji.py`,
which records their provenance and licences in the file. Their held-out split takes whole base emoji (skin
tones and both sets together), a fixed share of each category, so no near-copy of a test image is trained on.
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .classes import EMOJI_CATEGORIES
from .errors import DsdError, OptionError
from .limits import MAX_FILE_PIXELS, MAX_IMAGE_SIDE, WHERE, at_most, bytes_in_file
from .text import safe_text

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


EMOJI_FILES = {"emoji": ("emoji32.npz", 32), "emoji16": ("emoji16.npz", 16)}  # --data name: (asset, side)
EMOJI_TEST_SHARE = 0.1  # of each category's base emoji
EMOJI_SPLIT_SEED = 0
EMOJI_BUILD = "python scripts/make_emoji.py"


def emoji_path(name: str) -> Path:
    """Where the `emoji` or `emoji16` data file is (shipped in `dsd_core/assets`)."""
    return Path(str(resources.files("dsd_core.assets").joinpath(EMOJI_FILES[name][0])))


def emoji_split(category: np.ndarray, group: np.ndarray, split: str) -> np.ndarray:
    """Sorted indices of the `train`, `test` or `all` split: per category, `EMOJI_TEST_SHARE` of its base emoji
    (`group`), drawn with a fixed seed, and every image of them, are the test split."""
    if split == "all":
        return np.arange(len(group))
    if split not in ("train", "test"):
        raise DsdError(f"unknown emoji split {split!r}; choose train, test or all")
    rng = np.random.default_rng(EMOJI_SPLIT_SEED)
    test_groups = []
    for c in range(len(EMOJI_CATEGORIES)):
        groups = np.unique(group[category == c])
        test_groups.extend(rng.permutation(groups)[: int(len(groups) * EMOJI_TEST_SHARE)])
    is_test = np.isin(group, test_groups)
    return np.flatnonzero(is_test if split == "test" else ~is_test)


def read_emoji(name: str = "emoji") -> dict[str, np.ndarray]:
    """The arrays of an emoji data file (`scripts/make_emoji.py` says what each holds); a one-line error naming
    the command that builds it where it is missing."""
    path = emoji_path(name)
    if not path.is_file():
        raise DsdError(f"{path} is missing: build it from a dsd checkout with `{EMOJI_BUILD}` (needs npm)")
    with np.load(path, allow_pickle=False) as arrays:
        out = {key: arrays[key] for key in arrays.files}
    side = EMOJI_FILES[name][1]
    if out["images"].dtype != np.uint8 or out["images"].shape[1:] != (side, side, 3):
        raise DsdError(f"{path}: images must be uint8 (N, {side}, {side}, 3), got {out['images'].dtype} "
                       f"{out['images'].shape}; rebuild it with `{EMOJI_BUILD}`")
    if tuple(out["category_names"].tolist()) != EMOJI_CATEGORIES:
        raise DsdError(f"{path}: its categories are not dsd's (dsd_core/classes.py); rebuild it with `{EMOJI_BUILD}`")
    return out


def load_emoji(split: str = "train", name: str = "emoji") -> tuple[torch.Tensor, torch.Tensor]:
    """(RGB images in [−1, 1] shaped (N, 3, S, S), category labels) of the `train`, `test` or `all` split."""
    arrays = read_emoji(name)
    idx = emoji_split(arrays["category"], arrays["group"], split)
    return uint8_to_tensor(arrays["images"][idx]), torch.from_numpy(arrays["category"][idx].astype(np.int64))


class UnusableImage(DsdError):
    """An image file dsd does not read: unreadable, above the pixel limit, or of values it cannot scale. Its
    message names the file, whose name may hold anything (a newline, an escape sequence): made `safe_text`."""

    def __init__(self, message: str):
        super().__init__(safe_text(message))


# Pillow's modes of one channel; the 16-bit ones (PNG, TIFF) are scaled by 65535, not clipped at 255
GREY_MODES = {"L", "1", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N"}


def image_header(file: Path) -> tuple[str, int, int]:
    """(mode, width, height) from the file's header alone, no pixels decoded; `UnusableImage` above
    `limits.MAX_FILE_PIXELS` (Pillow's decompression-bomb warning and error included)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as im:
                mode, (width, height) = im.mode, im.size
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UnusableImage(f"image {file}: too many pixels (Pillow calls it a decompression bomb); dsd reads at "
                            f"most {MAX_FILE_PIXELS} per image ({WHERE})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UnusableImage(f"unreadable image {file}: {exc}") from None
    if width * height > MAX_FILE_PIXELS:
        raise UnusableImage(f"image {file}: {width}×{height} pixels, above dsd's limit of {MAX_FILE_PIXELS} per "
                            f"image ({WHERE})")
    return mode, width, height


def eight_bit(im: Image.Image, file: Path) -> Image.Image:
    """`im` with 8 bits per channel, values scaled by the image's own depth: 16-bit greyscale ÷ 257, float
    images in [0, 1] × 255. 32-bit integers, and floats outside [0, 1], have no known range: refused."""
    if im.mode in SIXTEEN_BIT or (im.mode == "I" and im.format == "PNG"):  # PNG's "I" is 16-bit greyscale
        return Image.fromarray(np.rint(np.asarray(im, dtype=np.float64) / 257).clip(0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
            raise UnusableImage(f"image {file}: float pixels outside [0, 1], of no known range; save it with 8 or 16 "
                                "bits per channel")
        return Image.fromarray(np.rint(a * 255).astype(np.uint8), "L")
    if im.mode == "I":
        raise UnusableImage(f"image {file}: 32-bit integer pixels, of no known range; save it with 8 or 16 bits per "
                            "channel")
    return im


ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def on_white(im: Image.Image) -> Image.Image:
    """`im` with its transparency composited on white ("RGB", or "L" for grey with alpha), as the shipped emoji
    are: dropping the alpha channel would keep whatever colour transparent pixels store, often black. Exact:
    each value is round(c·a/255 + 255·(1 − a/255)). Images without transparency come back unchanged."""
    if im.mode not in ALPHA_MODES and "transparency" not in im.info:
        return im
    rgba = np.asarray(im.convert("RGBA"), dtype=np.uint32)
    alpha = rgba[..., 3:]
    rgb = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
    out = Image.fromarray(rgb.astype(np.uint8), "RGB")
    return out.convert("L") if im.mode in ("LA", "La") or (im.mode == "L" and "transparency" in im.info) else out


def read_image(file: str | Path, mode: str | None = None) -> Image.Image:
    """One image file as an 8-bit Pillow image (`mode` "L" or "RGB": converted to it); a one-line
    `UnusableImage` error if it is unreadable, above the pixel limit or of values it cannot scale."""
    file = Path(file)
    image_header(file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the header was checked above
            with Image.open(file) as im:
                im.load()
                im = on_white(eight_bit(im, file))
                return im.convert(mode) if mode else im.copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UnusableImage(f"unreadable image {file}: {exc}") from None


def read_image_folder(path: str | Path, size: int | None = None, channels: int | None = None) -> np.ndarray:
    """All images under `path` (recursively, sorted by path) as uint8 (N, size, size, C), pixel values exact.

    `size` defaults to the first image's width (other sizes are resized to square with Lanczos); `channels`
    (1 or 3) defaults to 1 if every image is greyscale, else 3. Files that are unreadable, above the pixel limit
    or of pixel values with no known range are skipped with a warning. Headers are read first, so the result
    is checked against `limits.MAX_HELD_BYTES` before it is allocated, and one image is decoded at a time.
    """
    root = Path(path)
    if not root.is_dir():
        raise DsdError(f"image folder not found: {safe_text(root)}")
    if size is not None:
        at_most(MAX_IMAGE_SIDE, "pixels per side", image_size=size)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    others = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES)
    if others:
        warnings.warn(safe_text(f"ignoring {len(others)} file(s) that are not images in {root}, e.g. "
                                f"{others[0].name}"), stacklevel=2)
    headers = []
    for file in files:
        try:
            headers.append((file, image_header(file)[0]))
        except UnusableImage as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
    if channels is None:
        channels = 1 if headers and all(mode in GREY_MODES for _, mode in headers) else 3
    if channels not in (1, 3):
        raise DsdError(f"channels must be 1 or 3, got {channels}")
    mode = "L" if channels == 1 else "RGB"
    out, n = None, 0
    for file, _ in headers:
        try:
            im = read_image(file, mode)
        except UnusableImage as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
            continue
        if out is None:  # the first image fixes the size: the whole result is checked before it is allocated
            size = size or im.width
            bytes_in_file(root, f"{len(headers)} images of {size}×{size}×{channels}",
                          len(headers) * size * size * channels)
            out = np.empty((len(headers), size, size, channels), dtype=np.uint8)
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.LANCZOS)
        out[n] = np.asarray(im, dtype=np.uint8).reshape(size, size, channels)
        n += 1
    if out is None:
        raise DsdError(f"no readable images (png, jpg, …) in {safe_text(root)}")
    return out if n == len(out) else out[:n].copy()


def uint8_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) → float32 (N, C, H, W) in [−1, 1]; the inverse of `images.to_uint8`."""
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def load_image_folder(path: str | Path, size: int | None = None, channels: int | None = None) -> torch.Tensor:
    """`read_image_folder` as training data: (N, C, size, size) in [−1, 1]."""
    return uint8_to_tensor(read_image_folder(path, size, channels))


def load_dataset(spec: str, size: int | None = None) -> tuple[torch.Tensor, str]:
    """Images named on the command line: `digits`, `emoji` or `emoji16` (their train split) or an image folder;
    and a description."""
    if spec == "digits":
        if size not in (None, 8):
            raise OptionError("the digits are 8×8; {image_size} does not apply")
        return load_digits("train")[0], "digits:train"
    if spec in EMOJI_FILES:
        side = EMOJI_FILES[spec][1]
        if size not in (None, side):
            raise OptionError(f"{spec} is {side}×{side} (emoji: 32, emoji16: 16); {{image_size}} does not apply")
        return load_emoji("train", spec)[0], f"{spec}:train"
    return load_image_folder(spec, size), str(Path(spec).resolve())


def load_labels(spec: str) -> torch.Tensor:
    """Class labels of the images `load_dataset(spec)` returns: the digits' digit, the emoji's category."""
    if spec == "digits":
        return load_digits("train")[1]
    if spec in EMOJI_FILES:
        return load_emoji("train", spec)[1]
    raise DsdError(f"class labels exist only for digits, emoji and emoji16, not for {spec!r}; train {spec!r} "
                   "unconditionally")
