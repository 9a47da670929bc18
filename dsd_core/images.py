"""Images out: [−1, 1] tensors to uint8, grids upscaled for people, and the three sample formats
(`*.png` grid, a folder of PNGs, `*.npz` with `arr_0` as N×H×W×C uint8), each written atomically."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_write_bytes
from .errors import DsdError


def to_uint8(x) -> np.ndarray:
    """(N, C, H, W) in [−1, 1] (a torch tensor or a numpy array) → (N, H, W, C) uint8, rounding to the
    nearest level. numpy only, so onnxruntime sampling writes images without torch."""
    if hasattr(x, "detach"):  # a torch tensor; duck-typed so this module never imports torch
        x = x.detach().float().cpu().numpy()
    x = ((np.asarray(x, dtype=np.float32) + np.float32(1.0)) * np.float32(127.5)).round().clip(0, 255)
    return np.ascontiguousarray(x.astype(np.uint8).transpose(0, 2, 3, 1))


def make_grid(
    images: np.ndarray, scale: int | None = None, pad: int | None = None, cols: int | None = None
) -> Image.Image:
    """Tile (N, H, W, C) uint8 images into one picture, nearest-neighbour upscaled so small images are
    visible (by default each tile becomes at least 64 pixels wide), with grey gaps between tiles."""
    n, h, w, c = images.shape
    scale = scale or max(1, math.ceil(64 / max(h, w)))
    pad = max(1, scale // 2) if pad is None else pad
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    th, tw = h * scale, w * scale
    canvas = np.zeros((rows * (th + pad) + pad, cols * (tw + pad) + pad, c), dtype=np.uint8)
    canvas[...] = 96  # grey gaps between tiles
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        big = img.repeat(scale, axis=0).repeat(scale, axis=1)
        canvas[pad + r * (th + pad) : pad + r * (th + pad) + th, pad + q * (tw + pad) : pad + q * (tw + pad) + tw] = big
    return _pil(canvas)


def _pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def output_kind(out: str | Path) -> str:
    """`grid` for *.png, `npz` for *.npz, `folder` otherwise (a directory, existing or to be made)."""
    suffix = Path(out).suffix.lower()
    if suffix == ".png":
        return "grid"
    if suffix == ".npz":
        return "npz"
    if suffix:
        raise DsdError(f"output {out} must end in .png (a grid), .npz (arr_0) or be a folder")
    return "folder"


def check_writable(out: str | Path) -> None:
    """Fail before sampling, not after, when the output cannot be written."""
    out = Path(out)
    parent = out if output_kind(out) == "folder" else out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DsdError(f"cannot write to {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise DsdError(f"cannot write to {parent}: permission denied")


def write_samples(images: np.ndarray, out: str | Path) -> Path:
    """Write (N, H, W, C) uint8 images to a grid PNG, an npz or a folder of PNGs."""
    out = Path(out)
    kind = output_kind(out)
    if kind == "grid":
        return atomic_write_bytes(out, _png_bytes(make_grid(images)))
    if kind == "npz":
        buf = io.BytesIO()
        np.savez(buf, arr_0=images)
        return atomic_write_bytes(out, buf.getvalue())
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DsdError(f"cannot create folder {out}: {exc.strerror or exc}") from None
    width = max(5, len(str(len(images) - 1)))
    for i, img in enumerate(images):
        atomic_write_bytes(out / f"{i:0{width}d}.png", _png_bytes(_pil(img)))
    return out
