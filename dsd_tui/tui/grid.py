"""Digit grids for the terminal: cut a run's preview PNG into its tiles, and lay tiles out at one pixel per
half-cell, as many as fit, so 8×8 digits stay legible in an 80×24 terminal. Torch-free, unlike dsd_core.images.

A preview is named by the run's event log, which is untrusted (a copied or downloaded run folder): it is read
as the rest of a run folder is, never through a link and only if it is a plain file of bounded size.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image

from dsd_core.limits import MAX_FILE_PIXELS

GAP_VALUE = 96  # the grey of the gaps dsd_core.images.make_grid draws between tiles
MAX_PREVIEW_BYTES = 64 * 2**20  # a preview grid PNG is kilobytes; /dev/zero or a huge file is not one


class UnsafePreview(ValueError):
    """A preview the app does not open (a link, not a plain file, outside the run, too big); load_grid shows
    nothing for it, as for an unreadable one."""


def open_preview(path: str | Path, run: str | Path | None = None) -> int:
    """A file descriptor of the preview `path`, read only: not through a symbolic link (O_NOFOLLOW), not from a
    linked folder between the run folder and it (RunDir.check_links's rule; without `run`, its own folder), a
    regular file (O_NONBLOCK: a FIFO cannot hang the app). With `run`, it must lie inside that folder."""
    if run is not None and ".." in Path(path).parts:
        raise UnsafePreview(f"{path} is not inside the run folder {run}")
    full = Path(os.path.abspath(path))
    top = Path(os.path.abspath(run)) if run is not None else full.parent.parent
    if run is not None and top not in full.parents:
        raise UnsafePreview(f"{path} is not inside the run folder {run}")
    for folder in full.parents:
        if folder == top:
            break
        if folder.is_symlink():
            raise UnsafePreview(f"{folder} is a symbolic link; the app reads a run's previews only inside its folder")
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        if full.is_symlink():
            raise UnsafePreview(f"{path} is a symbolic link; the app does not read previews through links") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_PREVIEW_BYTES:
        os.close(fd)
        raise UnsafePreview(f"{path} is not a regular file of at most {MAX_PREVIEW_BYTES} bytes")
    os.set_blocking(fd, True)
    return fd


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of False in a 1-d mask."""
    out, start = [], None
    for i, gap in enumerate(mask.tolist() + [True]):
        if not gap and start is None:
            start = i
        elif gap and start is not None:
            out.append((start, i))
            start = None
    return out


def _native(tiles: list[np.ndarray], most: int) -> np.ndarray:
    """Undo nearest-neighbour upscaling: the largest block size (at most `most`) that every tile is made of, one
    for all, so that a flat tile (one colour: any block size fits it) is not shrunk alone to another shape."""
    h, w = tiles[0].shape[:2]
    for s in range(min(h, w, most), 1, -1):
        if h % s == 0 and w % s == 0 and all(np.array_equal(t[::s, ::s].repeat(s, 0).repeat(s, 1), t) for t in tiles):
            return np.stack([t[::s, ::s] for t in tiles])
    return np.stack(tiles)


def tiles_from_grid(path: str | Path, run: str | Path | None = None) -> np.ndarray:
    """(N, h, w) or (N, h, w, 3) uint8 tiles at native resolution, in reading order; one tile if the picture
    is not a gapped grid. `path` is opened by `open_preview` (with `run`: the run folder it must lie in), and
    its pixel count is checked from the header before it is decoded."""
    with os.fdopen(open_preview(path, run), "rb") as f:
        try:
            with Image.open(f) as picture:
                if picture.width * picture.height > MAX_FILE_PIXELS:
                    raise UnsafePreview(f"{path} has {picture.width}×{picture.height} pixels, above {MAX_FILE_PIXELS}")
                image = np.asarray(picture.convert("L" if picture.mode in ("L", "1") else "RGB"))
        except Image.DecompressionBombError as exc:
            raise UnsafePreview(str(exc)) from None
    flat = image if image.ndim == 2 else image.min(axis=2)
    high = image if image.ndim == 2 else image.max(axis=2)
    gap = (flat == GAP_VALUE) & (high == GAP_VALUE)
    rows, cols = _runs(gap.all(axis=1)), _runs(gap.all(axis=0))
    sizes = {(r1 - r0, c1 - c0) for r0, r1 in rows for c0, c1 in cols}
    if not rows or not cols or len(sizes) != 1:
        return image[None]
    pad = min(rows[0][0], cols[0][0])  # make_grid's gap is max(1, scale // 2): its scale is at most 2·gap + 1
    tiles = [image[r0:r1, c0:c1] for r0, r1 in rows for c0, c1 in cols]
    while (len(tiles) - 1) % len(cols) and (tiles[-1] == GAP_VALUE).all():
        tiles.pop()  # an empty place make_grid left after the last image (8 images on 3 × 3), not an image
    return _native(tiles, 2 * pad + 1 if pad else image.shape[0])


def fit(tile_h: int, tile_w: int, cells_w: int, cells_h: int, count: int) -> tuple[int, int]:
    """(cols, rows) of tiles with 1-pixel gaps that fit cells_w × cells_h half-cell characters."""
    cols = max(1, (cells_w - 1) // (tile_w + 1))
    rows = max(1, (2 * cells_h - 1) // (tile_h + 1))
    cols = min(cols, count)
    return cols, max(1, min(rows, -(-count // cols)))


def compose(tiles: np.ndarray, cols: int, rows: int, gap: int = 1, scale: int = 1) -> Image.Image:
    """The first cols × rows tiles on a dark grey canvas, each upscaled by `scale`."""
    n, h, w = tiles.shape[:3]
    h, w = h * scale, w * scale
    shape = (rows * (h + gap) + gap, cols * (w + gap) + gap) + tiles.shape[3:]
    canvas = np.full(shape, 40, dtype=np.uint8)
    for i in range(min(n, cols * rows)):
        r, c = divmod(i, cols)
        big = tiles[i].repeat(scale, 0).repeat(scale, 1)
        canvas[gap + r * (h + gap): gap + r * (h + gap) + h, gap + c * (w + gap): gap + c * (w + gap) + w] = big
    return Image.fromarray(canvas)


def to_tiles(images: np.ndarray) -> np.ndarray:
    """Sampler output (N, C, H, W) float in [0, 1] → (N, H, W[, 3]) uint8 tiles."""
    x = np.clip(np.rint(np.asarray(images, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    x = x.transpose(0, 2, 3, 1)
    return x[..., 0] if x.shape[-1] == 1 else x
