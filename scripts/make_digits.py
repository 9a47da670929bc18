"""Write dsd_core/assets/digits.npz from scikit-learn's copy of the UCI handwritten digits.

Run once by a maintainer (`pip install scikit-learn && python scripts/make_digits.py`); the result ships in
the package so that scikit-learn is never a runtime dependency. Source: E. Alpaydin and C. Kaynak, "Optical
Recognition of Handwritten Digits", UCI Machine Learning Repository, CC BY 4.0.
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parents[1] / "dsd_core" / "assets" / "digits.npz"


def main() -> None:
    digits = load_digits()
    images = digits.images.astype(np.uint8)  # (1797, 8, 8), grey levels 0..16
    labels = digits.target.astype(np.uint8)
    assert images.shape == (1797, 8, 8) and images.max() == 16
    np.savez_compressed(OUT, images=images, labels=labels)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): {images.shape[0]} images")


if __name__ == "__main__":
    main()
