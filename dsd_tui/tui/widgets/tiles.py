"""A grid of small images drawn at one pixel per half-cell, as many tiles as fit the widget's size.

textual-image draws it (Kitty or Sixel graphics where the terminal has them, coloured half-cells otherwise);
the image widget gets an explicit size in cells, without which it may render one row high.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from textual.app import ComposeResult
from textual.containers import Container
from textual_image.widget import Image

from ..grid import compose, fit, tiles_from_grid


class TileGrid(Container):
    """Shows `tiles` ((N, h, w[, 3]) uint8); `shown` is how many fit and are drawn."""

    DEFAULT_CSS = """
    TileGrid { height: 1fr; width: 1fr; }
    TileGrid > Image { width: 1; height: 1; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tiles: np.ndarray | None = None
        self.picture: PILImage.Image | None = None
        self.shown = 0
        self.cols = 0

    def compose(self) -> ComposeResult:
        yield Image()

    def set_tiles(self, tiles: np.ndarray | None) -> None:
        self.tiles = tiles
        self.redraw()

    def load_grid(self, path: Path, run: Path | None = None) -> bool:
        """Tiles from a preview grid PNG (inside the folder `run`, if given); False (and nothing shown) if it
        cannot or may not be read."""
        try:
            self.set_tiles(tiles_from_grid(path, run))
        except (OSError, ValueError):
            self.set_tiles(None)
            return False
        return True

    def on_resize(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        image = self.query_one(Image)
        width, height = self.content_size.width, self.content_size.height
        if self.tiles is None or width < 3 or height < 2:
            self.picture, self.shown, self.cols = None, 0, 0
            image.image = None
            return
        n, h, w = self.tiles.shape[:3]
        cols, rows = fit(h, w, width, height, n)
        self.picture = compose(self.tiles, cols, rows)
        self.shown, self.cols = min(n, cols * rows), cols
        cells_w, cells_h = self.picture.width, -(-self.picture.height // 2)
        shrink = min(1.0, width / cells_w, height / cells_h)  # a tile bigger than the space: scale it down
        image.styles.width = max(1, int(cells_w * shrink))
        image.styles.height = max(1, int(cells_h * shrink))
        image.image = self.picture
