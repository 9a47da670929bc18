"""A small CNN classifier of the 8×8 digits: the feature extractor for judging digit samples.

Inception features mean nothing on 8×8 greyscale digits; a network trained on the digits themselves does. Its
64-d penultimate activations are the features for the Fréchet distance and precision/recall, and its argmax
gives per-class counts. It is trained on the fixed `train` split only, so its `test` accuracy is honest and
the `test` split can serve as the real-data floor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .checkpoint import load_state_dict, load_tensors, prefixed, save_tensors, unprefixed
from .data import load_digits, uint8_to_tensor
from .errors import DsdError

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Augmentation: move each image by up to one pixel (digits are not centred exactly)."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dx, dy = torch.randint(0, 3, (2, x.shape[0]), generator=gen)
    return torch.stack([padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8] for i in range(x.shape[0])])


@torch.no_grad()
def accuracy(model: DigitsClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model.eval()(x).argmax(1) == y).float().mean())


def train_classifier(epochs: int = 40, batch: int = 64, lr: float = 2e-3, seed: int = 0,
                     on_step: Callable[[int, int], None] | None = None) -> tuple[DigitsClassifier, float]:
    """Train on the digits' train split; return the model and its held-out test accuracy. `on_step(done,
    total)` follows the optimizer steps (for a progress bar)."""
    if epochs < 1 or batch < 1:
        raise DsdError(f"epochs and batch must be at least 1, got {epochs} and {batch}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = load_digits("train")
    model = DigitsClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    total = epochs * -(-len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total)
    done = 0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            loss = F.cross_entropy(model(_shift(x[idx], gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if on_step is not None:
                on_step(done, total)
    return model.eval(), accuracy(model, *load_digits("test"))


def save_classifier(path: str | Path, model: DigitsClassifier, test_accuracy: float, recipe: dict) -> Path:
    meta = {"kind": "digits-classifier", "test_accuracy": test_accuracy, "recipe": recipe, "dsd_version": __version__}
    return save_tensors(path, prefixed("model", model.state_dict()), meta)


def load_classifier(path: str | Path) -> tuple[DigitsClassifier, dict]:
    tensors, meta = load_tensors(path)
    if meta.get("kind") != "digits-classifier":
        raise DsdError(f"{path} is not a digits classifier")
    model = DigitsClassifier()
    load_state_dict(model, unprefixed("model", tensors), path)
    return model.eval(), meta


@torch.no_grad()
def classify(model: DigitsClassifier, images: np.ndarray, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 64), predicted labels (N,)) of uint8 images (N, 8, 8, 1)."""
    if images.ndim != 4 or images.shape[1:] != (8, 8, 1):
        raise DsdError(f"digit features need 8×8×1 images, got {images.shape[1:]}")
    x = uint8_to_tensor(images)
    feats, labels = [], []
    for start in range(0, len(x), batch):
        f = model.features(x[start : start + batch])
        feats.append(f.double().numpy())
        labels.append(model.head(f).argmax(1).numpy())
    return np.concatenate(feats), np.concatenate(labels)
