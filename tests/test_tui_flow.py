"""The whole journey, driven by the pilot: set up a tiny run, watch its loss and histogram arrive, export it
to ONNX and generate with the exported sampler. Real subprocesses, a tiny model, 20 updates."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input, Select, Static

from dsd_tui.app import DsdApp
from dsd_tui.tui.screens.export import ExportScreen
from dsd_tui.tui.screens.run import RunScreen
from dsd_tui.tui.screens.sampler import SamplerScreen
from dsd_tui.tui.screens.setup import SetupScreen
from dsd_tui.tui.setup_form import CHECKPOINT
from dsd_tui.tui.widgets.histogram import StepFrequencyBars
from dsd_tui.tui.widgets.loss_plot import LossPlot
from dsd_tui.tui.widgets.tiles import TileGrid

from .tui_helpers import CATALOG, wait_for


async def type_into(pilot, selector: str, text: str) -> None:
    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    field.value = ""
    await pilot.press(*text)


async def test_setup_run_export_sample(tmp_path, tiny_ckpt):
    app = DsdApp(runs_root=tmp_path / "runs", catalog=CATALOG)
    async with app.run_test(size=(100, 32)) as pilot:
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        setup.query_one("#model", Select).value = CHECKPOINT
        await pilot.pause()
        await type_into(pilot, "#path", str(tiny_ckpt))
        await type_into(pilot, "#n_from", "4")
        await type_into(pilot, "#n_to", "2")
        await type_into(pilot, "#updates", "20")
        await type_into(pilot, "#batch", "4")
        await pilot.press("enter")  # Enter in a field starts the run
        await pilot.pause()

        run = app.screen
        assert isinstance(run, RunScreen), setup.query_one("#start-note", Static).render()
        await wait_for(pilot, lambda: run.state.ended or run.problem, what="the run to end")
        assert run.problem is None, run.problem
        loss = run.query_one("#loss", LossPlot)
        assert loss.updates == list(range(1, 21)) and all(v > 0 for v in loss.losses)
        bars = run.query_one("#histogram", StepFrequencyBars).counts
        assert len(bars) == 4 and sum(bars) == 20 * 4  # 4-step finest grid, 20 updates of 4 trajectories
        assert "█" in str(run.query_one("#histogram", StepFrequencyBars).render())
        assert run.query_one("#first", TileGrid).shown > 0 and run.query_one("#latest", TileGrid).shown > 0
        status = str(run.query_one("#run-status", Static).render())
        assert "update 20/20" in status and "finished" in status

        await pilot.press("e")
        export = app.screen
        assert isinstance(export, ExportScreen)
        await wait_for(pilot, lambda: not export.busy, what="the export")
        message = str(export.query_one("#export-message", Static).render())
        assert "exported" in message, message
        assert list(export.exported) == [2] and export.exported[2].is_file()
        assert export.query_one("#exports", DataTable).row_count == 1 and "e-0" in message  # the parity, e.g. 1.0e-05

        await pilot.press("s")
        sampler = app.screen
        assert isinstance(sampler, SamplerScreen)
        await wait_for(pilot, lambda: sampler.latest is not None, what="the first samples")
        first = sampler.latest.images
        grid = sampler.query_one("#samples", TileGrid)
        assert first.shape[1:] == (1, 8, 8) and 0 <= first.min() and first.max() <= 1
        assert grid.shown == len(first) > 1  # as many generated as shown
        assert f" ms for {len(first)} images" in str(sampler.query_one("#sample-info", Static).render())

        await pilot.press("n")
        await wait_for(pilot, lambda: sampler.latest.seed == 1, what="a new seed")
        assert not (sampler.latest.images == first).all()
        await pilot.press("s")
        await pilot.pause()
        assert (Path(export.out_dir) / "samples-2steps-seed1.png").is_file()

    # the export is remembered: coming back lists it without exporting again
    app = DsdApp(runs_root=tmp_path / "runs", catalog=CATALOG)
    async with app.run_test(size=(100, 32)) as pilot:
        app.open_export(run.run_dir, run.state.model, 2)
        await pilot.pause()
        assert list(app.screen.exported) == [2] and not app.screen.busy
