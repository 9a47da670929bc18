"""Images out: [−1, 1] tensors to uint8, grids upscaled for people, and the three sample formats
(`*.png` grid, a folder of PNGs, `*.npz` with `arr_0` as N×H×W×C uint8), each written atomically: a folder
too, in a temporary sibling renamed into place. `.npz` and folder outputs are written batch by batch, so
`dsd sample --num` is bounded by the disk, not by memory; a grid holds its tiles (`limits.MAX_GRID_IMAGES`)."""

from __future__ import annotations

import io
import math
import os
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from numpy.lib import format as npy_format
from PIL import Image

from .atomic import atomic_file, atomic_folder, atomic_write_bytes, refuse_linked_run_folder
from .errors import DsdError
from .limits import MAX_GRID_IMAGES, MAX_NUM, at_most, check_held


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
    scale, pad, cols, rows = grid_layout(n, h, w, scale, pad, cols)
    th, tw = h * scale, w * scale
    canvas = np.zeros((rows * (th + pad) + pad, cols * (tw + pad) + pad, c), dtype=np.uint8)
    canvas[...] = 96  # grey gaps between tiles
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        big = img.repeat(scale, axis=0).repeat(scale, axis=1)
        canvas[pad + r * (th + pad) : pad + r * (th + pad) + th, pad + q * (tw + pad) : pad + q * (tw + pad) + tw] = big
    return _pil(canvas)


def grid_layout(n: int, h: int, w: int, scale: int | None = None, pad: int | None = None,
                cols: int | None = None) -> tuple[int, int, int, int]:
    """(scale, pad, cols, rows) of `make_grid`'s picture of n tiles of h × w."""
    scale = scale or max(1, math.ceil(64 / max(h, w)))
    pad = max(1, scale // 2) if pad is None else pad
    cols = cols or math.ceil(math.sqrt(n))
    return scale, pad, cols, math.ceil(n / cols)


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
    refuse_linked_run_folder(out)
    parent = out if output_kind(out) == "folder" else out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DsdError(f"cannot write to {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise DsdError(f"cannot write to {parent}: permission denied")


def check_output_size(out: str | Path, num: int, shape: tuple[int, int, int]) -> None:
    """`num` images of `shape` (C, H, W) fit the output's limits, checked before sampling: at most
    `limits.MAX_NUM`; a grid at most `MAX_GRID_IMAGES` tiles and a picture of at most `MAX_HELD_BYTES`."""
    at_most(MAX_NUM, "images", num=num)
    if output_kind(out) != "grid":
        return
    at_most(MAX_GRID_IMAGES, "images in a .png grid (write an .npz or a folder)", num=num)
    c, h, w = shape
    scale, pad, cols, rows = grid_layout(num, h, w)
    picture = (rows * (h * scale + pad) + pad) * (cols * (w * scale + pad) + pad) * c
    check_held(num, max(picture // num, c * h * w), why="in one grid picture (write an .npz or a folder)")


def write_samples(images: np.ndarray, out: str | Path) -> Path:
    """Write (N, H, W, C) uint8 images to a grid PNG, an npz or a folder of PNGs."""
    return write_sample_batches([images], out, len(images))


def write_sample_batches(batches: Iterable[np.ndarray], out: str | Path, num: int,
                         on_batch: Callable[[int], None] | None = None) -> Path:
    """Write `num` images that arrive in batches (uint8 (n, H, W, C)) to a grid PNG, an npz or a folder of PNGs.
    An npz or a folder is written as the batches come, holding one at a time; every batch is checked (uint8, the
    first batch's H × W × C, C = 1 or 3, `num` in all) before its images are written, and the output appears
    whole or not at all: a failure (a bad batch, a full disk, Ctrl-C) leaves the old OUT as it was."""
    out = Path(out)
    kind = output_kind(out)
    batches = _checked(batches, num, out, on_batch)
    if kind == "grid":
        return atomic_write_bytes(out, _png_bytes(make_grid(np.concatenate(list(batches)))))
    if kind == "npz":
        with atomic_file(out) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("arr_0.npy", "w", force_zip64=True) as member:  # what np.savez writes, in pieces
                for i, batch in enumerate(batches):
                    if i == 0:
                        npy_format.write_array_header_1_0(member, {"descr": npy_format.dtype_to_descr(batch.dtype),
                                                                   "fortran_order": False,
                                                                   "shape": (num, *batch.shape[1:])})
                    member.write(np.ascontiguousarray(batch).data)
        return out
    if out.exists() and not out.is_dir():
        raise DsdError(f"cannot write the folder {out}: it is a file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DsdError(f"cannot create folder {out.parent}: {exc.strerror or exc}") from None
    width = max(5, len(str(num - 1)))
    with atomic_folder(out) as write:
        i = 0
        for batch in batches:
            for img in batch:
                write(f"{i:0{width}d}.png", _png_bytes(_pil(img)))
                i += 1
    return out


def _checked(batches: Iterable[np.ndarray], num: int, out: Path, on_batch: Callable[[int], None] | None):
    """The batches, each checked before it is written; `on_batch(n)` after each."""
    shape, seen = None, 0
    for batch in batches:
        shape = shape or batch.shape[1:]
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != shape or shape[-1] not in (1, 3):
            raise DsdError(f"images for {out} must be uint8 N×H×W×C (C = 1 or 3) of one shape, got "
                           f"{batch.dtype} {batch.shape}; nothing written")
        seen += len(batch)
        if seen > num:
            raise DsdError(f"got more than the {num} images asked for {out}; nothing written")
        yield batch
        if on_batch is not None:
            on_batch(len(batch))
    if seen != num:
        raise DsdError(f"got {seen} of the {num} images asked for {out}; nothing written")
