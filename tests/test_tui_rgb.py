"""The terminal app with colour models (`--data emoji16`: 16×16 RGB, named categories): a run's RGB preview grids
come back as RGB tiles with their exact colours, and the sampler offers an ONNX export's class names, samples the
chosen class and shows (and saves) its images in colour, not collapsed to grey."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from textual.widgets import OptionList, Static

from dsd_core.checkpoint import LoadedModel, file_sha256, load_model, save_model
from dsd_core.classes import EMOJI_CATEGORIES
from dsd_core.images import to_uint8, write_samples
from dsd_core.models import UNet
from dsd_core.sampling import sample
from dsd_core.schedule import NoiseSchedule
from dsd_tui.app import DsdApp
from dsd_tui.tui.grid import GAP_VALUE, compose, fit, tiles_from_grid, to_tiles
from dsd_tui.tui.screens.run import RunScreen
from dsd_tui.tui.screens.sampler import ANY, SamplerScreen
from dsd_tui.tui.widgets.tiles import TileGrid
from exporters.onnx_export import export_onnx
from exporters.runtime import OnnxSampler

from .conftest import TINY
from .tui_helpers import CATALOG, wait_for

CANVAS = 40  # the dark grey `compose` lays tiles on


def tiny_rgb(num_classes: int | None = None) -> UNet:
    """The tests' tiny UNet made for emoji16 (16×16×3), the same weights each call, its output layers perturbed
    as `conftest.tiny_unet` does, so that its images are not flat."""
    torch.manual_seed(1)
    model = UNet(dataclasses.replace(TINY, image_size=16, in_channels=3, num_classes=num_classes))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def colour_tiles() -> np.ndarray:
    """Six 16×16 RGB tiles of distinct solid colours, each with one pixel per channel at the gap grey (96) but
    not grey as a whole, which must not split a tile."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 200, 10), (96, 96, 0), (0, 96, 96)]
    tiles = np.empty((6, 16, 16, 3), np.uint8)
    tiles[:] = np.array(colours, np.uint8)[:, None, None]
    tiles[:, 5, 7] = (GAP_VALUE, GAP_VALUE, 3)
    tiles[:, 9, 2] = (GAP_VALUE, 3, GAP_VALUE)
    return tiles


def test_rgb_grid_tiles_come_back_at_native_size_with_their_colours(tmp_path):
    """A grid the engine writes for 16×16×3 samples (`write_samples`, scale 4, grey gaps) is cut back into the
    exact RGB tiles, in order, not into grey ones and not into one picture."""
    tiles = colour_tiles()
    path = write_samples(tiles, tmp_path / "g.png")
    assert Image.open(path).mode == "RGB"
    back = tiles_from_grid(path)
    assert back.shape == (6, 16, 16, 3) and back.dtype == np.uint8
    assert np.array_equal(back, tiles)
    assert back[3, 0, 0].tolist() == [250, 200, 10] and back[4, 5, 7].tolist() == [96, 96, 3]


def test_one_flat_tile_does_not_lose_the_grid(tmp_path):
    """A flat tile (one colour, e.g. an emoji model's blank white sample, or the grey empty places after the last
    image) fits every block size: it was shrunk alone to 1×1 and the tiles no longer stacked, so the preview showed
    nothing. Now one scale for all, and empty places are not tiles."""
    tiles = np.random.default_rng(0).integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    tiles[4] = 255
    back = tiles_from_grid(write_samples(tiles, tmp_path / "rgb.png"))
    assert back.shape == (9, 16, 16, 3) and np.array_equal(back, tiles)
    digits = np.random.default_rng(1).integers(0, 256, (16, 8, 8, 1), dtype=np.uint8)
    digits[0] = 0  # a blank digit
    back = tiles_from_grid(write_samples(digits, tmp_path / "grey.png"))
    assert back.shape == (16, 8, 8) and np.array_equal(back, digits[..., 0])
    back = tiles_from_grid(write_samples(tiles[:7], tmp_path / "seven.png"))  # 3 × 3, two places left empty
    assert back.shape == (7, 16, 16, 3) and np.array_equal(back, tiles[:7])
    flat = np.zeros((4, 16, 16, 3), np.uint8)  # every tile flat: the gap width (scale // 2) bounds the scale
    flat[:] = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (1, 2, 3)], np.uint8)[:, None, None]
    back = tiles_from_grid(write_samples(flat, tmp_path / "flat.png"))
    assert back.shape == (4, 16, 16, 3) and np.array_equal(back, flat)


def test_compose_and_to_tiles_keep_rgb_channels():
    """The terminal picture and the saved grid are RGB, each tile's pixels where `fit` says, on a grey canvas;
    sampler output (N, 3, H, W) becomes (N, H, W, 3) with R, G, B in their places."""
    tiles = colour_tiles()
    picture = compose(tiles, cols=4, rows=2)
    assert picture.mode == "RGB" and picture.size == (4 * 17 + 1, 2 * 17 + 1)
    a = np.asarray(picture)
    assert a[0, 0].tolist() == [CANVAS] * 3 and a[17, 30].tolist() == [CANVAS] * 3  # gaps
    for i in range(6):
        r, c = divmod(i, 4)
        assert np.array_equal(a[1 + 17 * r: 17 + 17 * r, 1 + 17 * c: 17 + 17 * c], tiles[i])
    assert (a[18:34, 35:] == CANVAS).all()  # the two empty places of the second row
    big = np.asarray(compose(tiles, cols=3, rows=2, gap=4, scale=8))  # as the sampler's `s` saves
    assert big.shape == (2 * 132 + 4, 3 * 132 + 4, 3)
    assert np.array_equal(big[136:264, 268:396], tiles[5].repeat(8, 0).repeat(8, 1))
    assert fit(16, 16, cells_w=70, cells_h=18, count=6) == (4, 2)  # 4·17+1 ≤ 70 cells; 2·17+1 ≤ 36 half-cells

    images = np.zeros((2, 3, 16, 16), np.float32)
    images[0, 0], images[0, 1], images[0, 2] = 1.0, 0.2, 0.6
    images[1, 2, 3, 4] = 1.0
    out = to_tiles(images)
    assert out.shape == (2, 16, 16, 3) and out.dtype == np.uint8
    assert out[0, 7, 7].tolist() == [255, 51, 153] and out[1, 3, 4].tolist() == [0, 0, 255]
    assert out[1].sum() == 255


def rgb_run(run_dir):
    """A finished run folder of a tiny RGB model: its previews written as the distiller writes them
    (`write_samples(to_uint8(sample(...)))`), the latest with one blank white sample. (first, latest) uint8."""
    loaded = LoadedModel(tiny_rgb(), NoiseSchedule("linear"), "eps")
    first = to_uint8(sample(loaded, 4, num=8, seed=0))
    latest = to_uint8(sample(loaded, 2, num=8, seed=0))
    latest[5] = 255
    samples = run_dir / "samples"
    samples.mkdir(parents=True)
    t0 = 1_700_000_000.0
    distill = {"method": "dsd", "schedule": "naive", "n_from": 4, "n_to": 2, "updates": 10}
    events = [{"event": "config", "time": t0, "command": "distill", "distill": distill},
              {"event": "samples", "time": t0, "update": 0, "label": "undistilled",
               "path": str(write_samples(first, samples / "update_0000000.png"))},
              {"event": "samples", "time": t0 + 5, "update": 10,
               "path": str(write_samples(latest, samples / "update_0000010.png"))},
              {"event": "end", "time": t0 + 5, "update": 10, "model": str(run_dir / "model.safetensors"),
               "wall_seconds": 5.0}]
    (run_dir / "config.json").write_text(json.dumps({"command": "distill", "distill": distill}))
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return first, latest


async def test_run_screen_shows_rgb_previews_in_colour(tmp_path):
    """Both previews of an RGB run reach their TileGrids as the run's exact (N, 16, 16, 3) samples, and the
    pictures drawn are RGB with those pixels (the blank sample no longer blanks the whole latest preview)."""
    first, latest = rgb_run(tmp_path / "r")
    assert first.shape == (8, 16, 16, 3) and (first[..., 0] != first[..., 1]).any()  # really colour
    app = DsdApp(attach=tmp_path / "r", runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen)
        for selector, want in (("#first", first), ("#latest", latest)):
            grid = screen.query_one(selector, TileGrid)
            assert grid.tiles is not None and grid.tiles.shape == (8, 16, 16, 3), selector
            assert np.array_equal(grid.tiles, want), selector
            assert grid.shown >= 1 and grid.picture is not None and grid.picture.mode == "RGB"
            drawn = np.asarray(grid.picture)
            assert np.array_equal(drawn[1:17, 1:17], want[0])
        assert "undistilled · 2 steps" in str(screen.query_one("#first-label", Static).render())


@pytest.fixture
def emoji_onnx(tmp_path):
    """A tiny class-conditional 16×16 RGB model trained (as its provenance says) on emoji16, exported to a 2-step
    ONNX sampler, whose metadata then carries the category names."""
    ckpt = save_model(tmp_path / "e.safetensors", tiny_rgb(num_classes=len(EMOJI_CATEGORIES)),
                      NoiseSchedule("linear"), "v", ema=True, provenance={"data": "emoji16:train"})
    report = export_onnx(load_model(ckpt), tmp_path / "e-2steps.onnx", steps=2, source_sha256=file_sha256(ckpt))
    return report.path


async def test_sampler_offers_emoji_class_names_and_shows_the_chosen_class_in_colour(tmp_path, emoji_onnx):
    """`c` walks the classes the export's metadata names; the images shown are the ONNX sampler's own for that
    class and seed, as (N, 16, 16, 3) RGB tiles; `s` saves them in colour."""
    reference = OnnxSampler(emoji_onnx, threads=1)
    assert reference.image_shape == (3, 16, 16) and reference.class_names == EMOJI_CATEGORIES
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_sampler({2: emoji_onnx}, tmp_path / "out")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SamplerScreen)
        await wait_for(pilot, lambda: screen.latest is not None and screen.num_classes == 10, what="the classes")
        select = screen.query_one("#class")
        assert select.display and screen.check_action("next_class", ()) and screen.label is None
        overlay = select.query_one(OptionList)  # the list the select drops down
        offered = [str(overlay.get_option_at_index(i).prompt) for i in range(overlay.option_count)]
        assert offered == ["any"] + [f"{k} {name}" for k, name in enumerate(EMOJI_CATEGORIES)]

        grid = screen.query_one("#samples", TileGrid)
        num = len(screen.latest.images)
        cols, rows = fit(16, 16, grid.content_size.width, grid.content_size.height, 64)
        assert num == cols * rows > 1  # as many as the grid holds at 16×16, not at 8×8
        unconditional = reference.sample(num, 0)
        assert np.array_equal(screen.latest.images, unconditional)

        shown = {}
        for k, presses in ((0, 1), (3, 3)):  # any → 0 Smileys & Emotion → … → 3 Animals & Nature
            for _ in range(presses):
                await pilot.press("c")
            await wait_for(pilot, lambda k=k: screen.latest.label == k, what=f"class {k}")
            images = screen.latest.images
            assert images.shape == (num, 3, 16, 16)
            assert np.array_equal(images, reference.sample(num, 0, class_labels=k))  # that class, same seed
            assert grid.tiles.shape == (num, 16, 16, 3) and np.array_equal(grid.tiles, to_tiles(images))
            assert (grid.tiles[..., 0] != grid.tiles[..., 2]).any()  # not collapsed to grey
            assert grid.picture.mode == "RGB" and grid.shown == num
            info = str(screen.query_one("#sample-info", Static).render())
            assert f"class {k} {EMOJI_CATEGORIES[k]}" in info, info
            shown[k] = grid.tiles.copy()
        assert not np.array_equal(shown[0], shown[3]) and not np.array_equal(shown[3], to_tiles(unconditional))

        await pilot.press("s")
        await pilot.pause()
        saved = Image.open(tmp_path / "out" / "samples-2steps-seed0-class3.png")
        assert saved.mode == "RGB"
        assert np.array_equal(np.asarray(saved)[4:132, 4:132], shown[3][0].repeat(8, 0).repeat(8, 1))

        for _ in range(6):  # on to the last class
            await pilot.press("c")
        await wait_for(pilot, lambda: screen.latest.label == 9, what="class 9")
        assert "class 9 Flags" in str(screen.query_one("#sample-info", Static).render())
        await pilot.press("c")  # past the last class: back to any
        assert screen.query_one("#class").value == ANY
        await wait_for(pilot, lambda: screen.latest.label is None, what="any class")
        assert np.array_equal(screen.latest.images, unconditional)
