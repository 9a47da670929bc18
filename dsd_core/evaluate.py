"""One evaluation path for every score dsd reports: samples and a real reference through the same feature
extractor, Fréchet distance, precision/recall (k = 3) and density/coverage, with the real-data floor — the
same metrics for held-out real images — computed beside them.

Images enter as uint8 (N, H, W, C), exactly what `dsd sample` writes, whether they come from an `.npz`, a
folder of PNGs or straight from the sampler; nothing is resized or re-quantised on the way.
"""

from __future__ import annotations

import contextlib
import math
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
from numpy.lib import format as npy_format

from .classes import EMOJI_CATEGORIES
from .data import EMOJI_FILES, emoji_split, load_digits, read_emoji, read_image_folder
from .errors import DsdError, OptionError
from .features import ClassifierFeatures, FeatureExtractor
from .images import to_uint8
from .limits import bytes_in_file
from .metrics import density_coverage, fd, fd_standard_error, precision_recall

REFERENCE_SPLIT_SEED = 0
MIN_SAMPLES = 10
# Below this many samples the scores mislead without looking wrong: FD fits a covariance of D×D entries from n
# rows (biased up and noisy until n is several times D: 64-d digits features; at n = 10 the distilled digits
# model scores FD 196 ± 108), the k-NN balls of few samples are wide, so recall reads high (1.0 at n = 10), and
# few samples reach few real balls, so coverage reads low. Wider features raise the bound to 3·D.
SMALL_N = 200


@dataclass
class Reference:
    """Real images that samples are compared with, and held-out real images that give the floor; for a labelled
    data set, how many of `images` each class has (in id order), which `--class data` samples in proportion."""

    name: str
    images: np.ndarray
    held_out: np.ndarray
    label_counts: np.ndarray | None = None


def npz_member_header(path: Path, name: str = "arr_0") -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of one array in an `.npz`, from its `.npy` header alone: nothing is unpacked, so a small
    archive that claims a huge array is refused before a byte of it is allocated."""
    try:
        with zipfile.ZipFile(path) as archive:
            if f"{name}.npy" not in archive.namelist():
                names = ", ".join(n.removesuffix(".npy") for n in archive.namelist()[:5])
                raise DsdError(f"{path} has no {name} (keys: {names})")
            with archive.open(f"{name}.npy") as member:
                version = npy_format.read_magic(member)
                read = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
                if version not in read:
                    raise DsdError(f"{path}: {name} has .npy format {version}; dsd reads 1.0 and 2.0")
                shape, _, dtype = read[version](member)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DsdError(f"{path} is not a readable .npz: {exc}") from None
    return shape, dtype


def read_samples(path: str | Path) -> np.ndarray:
    """uint8 (N, H, W, C) from an `.npz` (key `arr_0`, the standard sample archive) or a folder of images.
    Sizes are checked before loading: the array's header against `limits.MAX_HELD_BYTES`, a folder's images
    as `data.read_image_folder` does."""
    path = Path(path)
    if path.is_dir():
        return read_image_folder(path)
    if not path.is_file():
        raise DsdError(f"samples not found: {path}")
    if path.suffix.lower() != ".npz":
        raise DsdError(f"samples must be an .npz (arr_0) or a folder of images, got {path}")
    shape, dtype = npz_member_header(path)
    if dtype != np.uint8:
        raise DsdError(f"{path}: arr_0 must be uint8 pixels 0..255, got {dtype}")
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] not in (1, 3)):
        raise DsdError(f"{path}: arr_0 must be N×H×W×C with C = 1 or 3, got shape {shape}")
    bytes_in_file(path, f"arr_0 of shape {shape}", math.prod(shape))
    try:
        with np.load(path, allow_pickle=False) as archive:
            images = archive["arr_0"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DsdError(f"{path} is not a readable .npz: {exc}") from None
    if images.ndim == 3:  # (N, H, W): greyscale without a channel axis
        images = images[..., None]
    return images


def digits_reference() -> Reference:
    """The digits the default model was trained on, with the held-out test split as the floor."""
    (images, labels), held_out = load_digits("train"), load_digits("test")[0]
    return Reference("digits", to_uint8(images), to_uint8(held_out), np.bincount(labels.numpy(), minlength=10))


def emoji_reference(name: str = "emoji16") -> Reference:
    """The emoji (`emoji` 32 px or `emoji16`) train split, with the held-out test split as the floor."""
    arrays = read_emoji(name)
    train, test = (emoji_split(arrays["category"], arrays["group"], s) for s in ("train", "test"))
    counts = np.bincount(arrays["category"][train], minlength=len(EMOJI_CATEGORIES))
    return Reference(name, arrays["images"][train], arrays["images"][test], counts)


def folder_reference(path: str | Path) -> Reference:
    """Real images from a folder or npz, split in two halves by a fixed seed: one to compare with, one as floor."""
    images = read_samples(path)
    if len(images) < 8:
        raise DsdError(f"reference {path} has {len(images)} images; at least 8 are needed")
    order = np.random.default_rng(REFERENCE_SPLIT_SEED).permutation(len(images))
    half = len(images) // 2
    return Reference(str(path), images[np.sort(order[half:])], images[np.sort(order[:half])])


def get_reference(spec: str) -> Reference:
    """`digits`, `emoji16`, `emoji` (the shipped data sets' train split; floor: their test split) or a path."""
    if spec == "digits":
        return digits_reference()
    return emoji_reference(spec) if spec in EMOJI_FILES else folder_reference(spec)


def named_data(shape: tuple[int, ...], data: str | None = None) -> str | None:
    """The shipped data set (`digits`, `emoji16`, `emoji`) that a model trained on `data` (its provenance, e.g.
    `emoji16:train`) or else images of `shape` (H, W, C) belong to: what `dsd eval` compares them with and
    judges them by unless told; None if none fits."""
    from .classifier import SPECS

    base = (data or "").split(":")[0]
    if base in SPECS and SPECS[base].shape == tuple(shape):
        return base
    return next((name for name, spec in SPECS.items() if spec.shape == tuple(shape)), None)


def default_reference(shape: tuple[int, ...], data: str | None = None) -> str:
    """The reference `dsd eval` compares images of `shape` (from a model trained on `data`) with unless told:
    their shipped data set, else the digits."""
    return named_data(shape, data) or "digits"


def default_features(reference: Reference) -> str:
    """The features `dsd eval` judges against `reference` unless told: its data set's classifier (for real images:
    the one of their size), else the digits'."""
    return named_data(reference.images.shape[1:], reference.name) or "digits"


def scores(real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 3) -> dict:
    precision, recall = precision_recall(real_feats, fake_feats, k=k)
    density, coverage = density_coverage(real_feats, fake_feats, k=5)
    return {"fd": fd(real_feats, fake_feats), "precision": precision, "recall": recall,
            "density": density, "coverage": coverage}


def check_features(features: FeatureExtractor, reference: Reference) -> None:
    """A domain classifier reads one image shape: the reference must have it (gray digits features cannot
    judge RGB emoji, nor the reverse). Inception reads any."""
    shape, ref = getattr(features, "shape", None), reference.images.shape[1:]
    if shape is not None and shape != ref:
        raise OptionError("the {name} features read {shape} images but the reference {ref_name} is {ref}; choose "
                          "{features} to match it (inception reads any size)", name=features.name, shape=shape,
                          ref_name=reference.name, ref=ref)


def check_samples(samples: np.ndarray, reference: Reference) -> None:
    """What `evaluate` needs of the samples, checked before any features are computed."""
    ref = reference.images
    if samples.shape[1:] != ref.shape[1:]:
        raise DsdError(f"samples are {samples.shape[1:]} images but the reference {reference.name} is {ref.shape[1:]}")
    if len(samples) < MIN_SAMPLES:
        raise DsdError(f"need at least {MIN_SAMPLES} samples to evaluate, got {len(samples)}")


def small_n_message(n: int, dim: int) -> str | None:
    """The warning for too few samples to trust the scores (see SMALL_N), or None."""
    enough = max(SMALL_N, 3 * dim)
    if n >= enough:
        return None
    return (f"{n} samples are too few for stable scores: FD is biased up and noisy below about {enough} for "
            f"{dim}-d features, recall reads high and coverage low; evaluate 1000 or more")


def evaluate(samples: np.ndarray, reference: Reference, features: FeatureExtractor,
             phase: Callable[[str], ContextManager] = contextlib.nullcontext, warn: bool = True) -> dict:
    """Scores of `samples` against `reference`, and the floor (held-out real images scored the same way).

    FD is biased upwards at small n, so `fd_at_floor_n` also scores the first n_floor samples: the number
    to put next to the floor's FD. `fd_se` is FD's standard error from the draw of the n samples (a
    jackknife, `metrics.fd_standard_error`). `phase(name)` wraps each long step, for a front end to show;
    `warn` emits a UserWarning first when n is too small to trust (`small_n_message`).
    """
    check_samples(samples, reference)
    check_features(features, reference)
    said = small_n_message(len(samples), features.dim)
    if warn and said:
        warnings.warn(said, UserWarning, stacklevel=2)
    ref, held = reference.images, reference.held_out
    with phase(f"computing {features.name} features of {len(samples)} samples and {len(ref) + len(held)} real "
               "images"):
        ref_f, held_f = features(ref), features(held)
        labels = None
        if isinstance(features, ClassifierFeatures):  # one pass gives both the features and the predicted classes
            sample_f, labels = features.classify(samples)
        else:
            sample_f = features(samples)
    result = {"n": len(samples), "reference": reference.name, "n_reference": len(ref), "features": features.name}
    with phase("scoring: FD with its standard error, precision/recall, density/coverage"):
        result.update(scores(ref_f, sample_f))
        result["fd_se"] = fd_standard_error(ref_f, sample_f)
        result["fd_at_floor_n"] = fd(ref_f, sample_f[: len(held)]) if len(samples) >= len(held) else None
        result["floor"] = {"n": len(held), **scores(ref_f, held_f), "fd_se": fd_standard_error(ref_f, held_f)}
    if labels is not None:
        result["class_counts"] = np.bincount(labels, minlength=10).tolist()
    return result


def across_seeds(results: list[dict], metrics: tuple[str, ...] = ("fd", "precision", "recall", "density",
                                                                    "coverage")) -> dict:
    """Mean and sample standard deviation of each metric over evaluations that differ only in the noise seed.

    FD at n = 1000 moves by about ±1 between seeds on the digits (more than many differences worth
    reporting), so comparisons of models quote the spread, not one draw.
    """
    out = {}
    for m in metrics:
        values = np.array([r[m] for r in results], dtype=np.float64)
        out[m] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                  "values": values.tolist()}
    return out


def per_class_accuracy(predicted: np.ndarray, requested: np.ndarray, num_classes: int) -> dict:
    """How often a generated image is classified as the class it was asked for: overall and per class."""
    predicted, requested = np.asarray(predicted), np.asarray(requested)
    per_class = {str(c): round(float((predicted[requested == c] == c).mean()), 4)
                 for c in range(num_classes) if (requested == c).any()}
    return {"accuracy": round(float((predicted == requested).mean()), 4), "per_class": per_class}
