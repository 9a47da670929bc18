"""Small CNN classifiers of the shipped data sets: the feature extractors that judge their samples.

Inception features mean nothing on 8×8 greyscale digits and little on 16-px emoji; a network trained on the data
itself does. Its 64-d penultimate activations are the features for the Fréchet distance and precision/recall,
and its argmax gives per-class counts. Each is trained on its data's fixed `train` split only, so its `test`
accuracy is honest and the `test` split can serve as the real-data floor. One `ClassifierSpec` per data set
names its network, the labels it predicts (its heads) and its shipped weights; training, saving, loading and
classifying are shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .checkpoint import load_state_dict, load_tensors, prefixed, save_tensors, unprefixed
from .data import emoji_split, load_digits, read_emoji, uint8_to_tensor
from .errors import DsdError

# 64-d for every data set: the emoji test split (702 images) is the floor, and FD fits a D×D covariance from it,
# so D stays well below n (128-d would leave ~5 images per dimension); 64 is ample for 10 + 2 classes, and the
# same width keeps `evaluate.SMALL_N` (3·D) the same for digits and emoji.
FEATURE_DIM = 64


class DigitsClassifier(nn.Module):
    """conv(32) → conv(64) → pool → conv(64) → pool → fc(64) = features → fc(10) = logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 2 * 2, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x in [−1, 1], (N, 1, 8, 8) → (N, 64)."""
        h = F.relu(self.conv1(x))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)
        return F.relu(self.fc(h.flatten(1)))

    def heads(self, f: torch.Tensor) -> list[torch.Tensor]:
        return [self.head(f)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class EmojiClassifier(nn.Module):
    """conv(32) → pool → conv(64) → pool → conv(128) → conv(128) → global average pool → fc(64) = features →
    fc(10) category logits and fc(2) set logits (google, twitter).

    The global average pool gives one network, with the same weight shapes, for 16 and 32 px. The set head makes
    the features see the drawing style as well as the content. Batch norm lets a few CPU epochs suffice.
    """

    def __init__(self):
        super().__init__()
        widths = [3, 32, 64, 128, 128]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1, bias=False) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm2d(b) for b in widths[1:])
        self.fc = nn.Linear(widths[-1], FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, 10)
        self.set_head = nn.Linear(FEATURE_DIM, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x in [−1, 1], (N, 3, S, S) → (N, 64)."""
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = F.relu(norm(conv(x)))
            if i < 2:
                x = F.max_pool2d(x, 2)
        return F.relu(self.fc(x.mean((2, 3))))

    def heads(self, f: torch.Tensor) -> list[torch.Tensor]:
        return [self.head(f), self.set_head(f)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class ClassifierSpec:
    """A data set's classifier: its network, the uint8 images (H, W, C) it reads, the labels of its heads (the
    first is the class), its default epochs and the background that a shifted image is padded with."""

    data: str
    make: Callable[[], nn.Module]
    shape: tuple[int, int, int]
    heads: tuple[str, ...]
    epochs: int
    background: float

    @property
    def kind(self) -> str:
        return f"{self.data}-classifier"

    @property
    def asset(self) -> str:
        return f"{self.data}_classifier.safetensors"


# Epochs: the emoji ones train in about 1 min (16 px) and 3 min (32 px) on one thread of a busy 2-core CPU; test
# accuracy had levelled off (emoji16: 81 % of categories at 20 epochs and at 40).
SPECS = {
    "digits": ClassifierSpec("digits", DigitsClassifier, (8, 8, 1), ("digit",), 40, -1.0),
    "emoji16": ClassifierSpec("emoji16", EmojiClassifier, (16, 16, 3), ("category", "set"), 20, 1.0),
    "emoji": ClassifierSpec("emoji", EmojiClassifier, (32, 32, 3), ("category", "set"), 16, 1.0),
}


def get_spec(data: str) -> ClassifierSpec:
    if data not in SPECS:
        raise DsdError(f"no classifier for data {data!r}; choose one of {', '.join(SPECS)}")
    return SPECS[data]


def labelled(data: str, split: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(images in [−1, 1], one label tensor per head) of a data set's `train` or `test` split."""
    if data == "digits":
        x, y = load_digits(split)
        return x, [y]
    arrays = read_emoji(get_spec(data).data)  # an unknown name fails in get_spec
    idx = emoji_split(arrays["category"], arrays["group"], split)
    return uint8_to_tensor(arrays["images"][idx]), [torch.from_numpy(arrays[k][idx].astype(np.int64))
                                                     for k in ("category", "set")]


def _shift(x: torch.Tensor, gen: torch.Generator, background: float = -1.0) -> torch.Tensor:
    """Augmentation: move each image by up to one pixel (digits are not centred exactly), padding with the
    background."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), value=background)
    dx, dy = torch.randint(0, 3, (2, x.shape[0]), generator=gen)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(x.shape[0])])


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of the first head (the class)."""
    return float((model.eval()(x).argmax(1) == y).float().mean())


@torch.no_grad()
def test_accuracies(model: nn.Module, data: str = "digits") -> dict[str, float]:
    """Held-out test accuracy of every head, by label name."""
    x, ys = labelled(data, "test")
    logits = model.eval().heads(model.features(x))
    return {name: float((z.argmax(1) == y).float().mean()) for name, z, y in zip(get_spec(data).heads, logits, ys)}


def train_classifier(epochs: int | None = None, batch: int = 64, lr: float = 2e-3, seed: int = 0,
                     on_step: Callable[[int, int], None] | None = None,
                     data: str = "digits") -> tuple[nn.Module, float]:
    """Train on `data`'s train split (the summed cross-entropy of every head); return the model and its held-out
    test accuracy of the class (`test_accuracies` gives every head's). `epochs` defaults to the spec's;
    `on_step(done, total)` follows the optimizer steps (for a progress bar)."""
    spec = get_spec(data)
    epochs = spec.epochs if epochs is None else epochs
    if epochs < 1 or batch < 1:
        raise DsdError(f"epochs and batch must be at least 1, got {epochs} and {batch}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, ys = labelled(data, "train")
    model = spec.make()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    total = epochs * -(-len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total)
    done = 0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            logits = model.heads(model.features(_shift(x[idx], gen, spec.background)))
            loss = sum(F.cross_entropy(z, y[idx]) for z, y in zip(logits, ys))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if on_step is not None:
                on_step(done, total)
    x_test, y_test = labelled(data, "test")
    return model.eval(), accuracy(model, x_test, y_test[0])


def save_classifier(path: str | Path, model: nn.Module, accuracies: dict[str, float], recipe: dict,
                    data: str = "digits") -> Path:
    """`test_accuracy` is the class's (as `accuracy` measures it), `test_accuracies` every head's."""
    spec = get_spec(data)
    meta = {"kind": spec.kind, "test_accuracy": accuracies[spec.heads[0]], "test_accuracies": accuracies,
            "recipe": recipe, "dsd_version": __version__}
    return save_tensors(path, prefixed("model", model.state_dict()), meta)


def load_classifier(path: str | Path, data: str = "digits") -> tuple[nn.Module, dict]:
    spec = get_spec(data)
    tensors, meta = load_tensors(path)
    if meta.get("kind") != spec.kind:
        raise DsdError(f"{path} is not a {data} classifier")
    model = spec.make()
    load_state_dict(model, unprefixed("model", tensors), path)
    return model.eval(), meta


@torch.no_grad()
def classify(model: nn.Module, images: np.ndarray, batch: int = 1024,
             data: str = "digits") -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 64), predicted classes (N,)) of uint8 images (N, H, W, C) of `data`'s shape."""
    shape = get_spec(data).shape
    if images.ndim != 4 or images.shape[1:] != shape:
        raise DsdError(f"{data} features need {shape[0]}×{shape[1]}×{shape[2]} images, got {images.shape[1:]}")
    x = uint8_to_tensor(images)
    feats, labels = [], []
    for start in range(0, len(x), batch):
        f = model.features(x[start : start + batch])
        feats.append(f.double().numpy())
        labels.append(model.heads(f)[0].argmax(1).numpy())
    return np.concatenate(feats), np.concatenate(labels)
