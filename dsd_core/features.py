"""Feature extractors for evaluation, behind one interface: uint8 images (N, H, W, C) → features (N, D).

- `digits`, `emoji16`, `emoji`: the 64-d penultimate layer of the shipped classifier of that data set
  (`classifier.py`): domain classifiers, not Inception (which means nothing at 8×8 and little at 16 px).
- `inception`: Inception-v3 pool features (2048-d, the FID network) through torch-fidelity, from a weights
  file the user has on disk. The file is first opened with torch's weights-only loader, which refuses any
  pickle that would run code, before torch-fidelity reads it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .errors import DsdError, OptionError

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
CLASSIFIER_FEATURES = ("digits", "emoji16", "emoji")
FEATURE_NAMES = (*CLASSIFIER_FEATURES, "inception")


class FeatureExtractor(Protocol):
    name: str
    dim: int  # feature width: how many samples make the scores stable depends on it

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


class ClassifierFeatures:
    """A data set's shipped classifier (`classifier.SPECS`); also reports the predicted class of each image.
    `shape` is the (H, W, C) of the images it reads, so a mismatch is refused before any work."""

    def __init__(self, data: str = "digits", path: str | Path | None = None):
        from .classifier import FEATURE_DIM, get_spec, load_classifier

        spec = get_spec(data)
        self.name, self.dim, self.shape = data, FEATURE_DIM, spec.shape
        path = path or Path(str(resources.files("dsd_core.assets").joinpath(spec.asset)))
        self.model, self.meta = load_classifier(path, data)

    def classify(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from .classifier import classify

        return classify(self.model, images, data=self.name)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.classify(images)[0]


class DigitsFeatures(ClassifierFeatures):
    """The shipped digits classifier."""

    def __init__(self, path: str | Path | None = None):
        super().__init__("digits", path)


class InceptionFeatures:
    """Inception-v3 2048-d pool features (torch-fidelity's port of the TensorFlow FID network)."""

    name = "inception"
    dim = 2048

    def __init__(self, weights: str | Path | None, device: str | torch.device = "cpu", batch: int = 64):
        if weights is None:
            raise OptionError("{features} inception needs {inception} PATH, the FID Inception weights; get them "
                              "from {url}", url=INCEPTION_URL)
        weights = Path(weights)
        if not weights.is_file():
            raise DsdError(f"Inception weights not found: {weights}; download them from {INCEPTION_URL}")
        try:
            torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DsdError(f"{weights} is not a plain weights file (refused by torch's weights-only loader): "
                           f"{exc}") from None
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as exc:
            raise DsdError("Inception features need torch-fidelity (pip install torch-fidelity torchvision): "
                           f"{exc}") from None
        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
        self.net = self.net.to(device).eval()
        self.device, self.batch = device, batch

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        if x.shape[1] == 1:  # greyscale as RGB, as FID tools do
            x = x.expand(-1, 3, -1, -1)
        feats = [self.net(x[i : i + self.batch].contiguous().to(self.device))[0] for i in range(0, len(x), self.batch)]
        return torch.cat(feats).double().cpu().numpy()


def get_extractor(
    name: str, inception: str | Path | None = None, device: str | torch.device = "cpu"
) -> FeatureExtractor:
    if name in CLASSIFIER_FEATURES:
        return ClassifierFeatures(name)
    if name == "inception":
        return InceptionFeatures(inception, device)
    raise DsdError(f"unknown features {name!r}; choose one of {', '.join(FEATURE_NAMES)}")
