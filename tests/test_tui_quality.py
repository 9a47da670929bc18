"""The run screen's agreement plot: checks, early stage ends and restores folded from a run's log, the plot's
series, best points and stage lines, its placeholder, and its fit at 80×24."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from dsd_core.events import LossEvent, ResumeEvent, read_events
from dsd_core.runs import RunDir
from dsd_tui.app import DsdApp
from dsd_tui.tui.runstate import RunState, StageEnd
from dsd_tui.tui.widgets.quality_plot import QualityPlot, boundaries, jumps, series

from .tui_helpers import CATALOG

T0 = 1_700_000_000.0
STAGES = [(32, 16), (16, 8), (8, 4), (4, 2)]  # an iterative 32→2 run, 60 updates a stage, a check every 10
PSNR = {16: [30.0, 31.0, 31.5, 31.2, 31.4, 31.3], 8: [27.0, 28.0, 27.5, 27.9],  # 8: two checks worse, ends at 100
        4: [24.0, 25.0, 25.0, 24.5, 24.8, 24.9], 2: [20.0, 21.0, 22.0, 21.5, 21.8, 21.9]}
END_LINE = ("stage 16→8 ended at update 100: 2 checks without a better model; 20 updates skipped; "
            "continuing from its best (28.00 dB)")


class Stop(Exception):
    pass


def write_quality_run(root: Path, quality_every: int | None = 10, stop_after: str | None = None) -> Path:
    """The log a run that keeps its best writes (through RunDir.event): a check every 10 updates, a restore
    of the best at each stage's end, stage 16→8 ended early at update 100. The clock runs 0.25 s an update
    actually run (the skipped ones take none); `stop_after` ends the log after the first event of that kind."""
    run = RunDir(root)
    distill = {"method": "dsd", "schedule": "iterative", "n_from": 32, "n_to": 2, "updates": 240}
    if quality_every is not None:
        distill["quality_every"] = quality_every
    stages = [{"steps": s, "target_steps": t, "updates": 60} for s, t in STAGES]
    run_updates = [0]  # updates actually run: the clock
    best_so_far: dict[int, float] = {}

    def event(kind, **fields):
        run_updates[0] += kind == "loss"
        run.event(kind, time=T0 + run_updates[0] / 4, **fields)
        if kind == stop_after:
            raise Stop

    try:
        event("config", command="distill", distill=distill, stages=stages, threads=1)
        u = 0
        for index, (steps, target) in enumerate(STAGES):
            event("stage", index=index, steps=steps, target_steps=target, updates=60, method="dsd")
            end, checks = u + 60, iter(PSNR[target] if quality_every else ())
            while u < end:
                u += 1
                event("loss", update=u, nfe=8 * u, loss=0.1)
                if u % 10 == 0 and (psnr := next(checks, None)) is not None:
                    best = psnr > best_so_far.get(target, 0.0)
                    best_so_far[target] = max(psnr, best_so_far.get(target, 0.0))
                    event("quality", update=u, steps=target, mse=0.01, psnr=psnr, best=best)
                    if (u, target) == (100, 8):
                        event("stage_end", update=u, steps=target, skipped=end - u, checks=2)
                        u = end
            if quality_every:
                event("restore", update=u, steps=target, psnr=max(PSNR[target]),
                      path=str(root / f"model-best-{target}steps.safetensors"))
        event("end", update=u, model=str(root / "model.safetensors"), wall_seconds=55.0)
    except Stop:
        pass
    return root


def folded(root: Path) -> RunState:
    state = RunState()
    for event in read_events(root / "events.jsonl"):
        state.apply(event)
    return state


def test_checks_stage_ends_and_restores_fold_into_the_state(tmp_path):
    state = folded(write_quality_run(tmp_path / "run"))
    assert state.quality_every == 10 and len(state.quality) == 6 + 4 + 6 + 6
    assert state.quality[6:10] == [(70, 8, 27.0), (80, 8, 28.0), (90, 8, 27.5), (100, 8, 27.9)]
    assert state.stage_ends == [StageEnd(update=100, steps=8, skipped=20, checks=2, name="16→8")]
    assert state.restores == [(60, 16, 31.5), (120, 8, 28.0), (180, 4, 25.0), (240, 2, 22.0)]
    assert state.stage_starts == [1, 61, 121, 181]  # the stage after the early end starts after the jump
    assert state.update == 240 and len(state.updates) == 220
    assert state.stage_end_lines() == [END_LINE]


def test_the_jump_moves_the_update_and_the_speed_is_measured_after_it(tmp_path):
    state = folded(write_quality_run(tmp_path / "run", stop_after="stage_end"))
    assert state.update == 120 and state.rate() is None  # 20 updates skipped in no time are no speed
    assert state.stage_end_lines() == [END_LINE.split("; continuing")[0]]  # no restore yet
    for u in (121, 122):
        state.apply(LossEvent(time=T0 + (u - 20) / 4, update=u, nfe=0, loss=0.1))
    assert state.rate() == pytest.approx(4.0)  # as before the jump
    state.apply(ResumeEvent(update=120))  # resumed from the checkpoint taken after the jump: the end stays
    assert len(state.stage_ends) == 1 and state.quality[-1] == (100, 8, 27.9)


def test_a_resume_drops_the_checks_ends_and_restores_it_does_again(tmp_path):
    state = folded(write_quality_run(tmp_path / "run"))
    state.apply(ResumeEvent(update=90))
    assert state.quality[-1] == (90, 8, 27.5) and len(state.quality) == 9
    assert state.stage_ends == [] and state.restores == [(60, 16, 31.5)] and state.stage_end_lines() == []
    assert state.stage_starts == [1, 61]


def test_a_restore_without_its_agreement_still_says_where_the_run_goes_on():
    state = RunState()
    state.apply({"event": "stage", "index": 0, "steps": 8, "target_steps": 4, "updates": 10})
    state.apply({"event": "stage_end", "update": 4, "steps": 4, "skipped": 6, "checks": 1})
    state.apply({"event": "restore", "update": 10, "steps": 4, "psnr": None, "path": "m.safetensors"})
    assert state.stage_end_lines() == ["stage 8→4 ended at update 4: 1 check without a better model; 6 updates "
                                       "skipped; continuing from its best"]
    assert state.update == 10


def test_the_plot_has_a_line_per_step_count_its_best_and_the_jump(tmp_path):
    state = folded(write_quality_run(tmp_path / "run"))
    lines = series(state.quality)
    assert [s.steps for s in lines] == [16, 8, 4, 2]  # the stages' order
    assert lines[1].updates == [70, 80, 90, 100] and lines[1].psnr == [27.0, 28.0, 27.5, 27.9]
    assert [s.best for s in lines] == [(30, 31.5), (80, 28.0), (140, 25.0), (210, 22.0)]  # a tie: the first
    assert jumps(state.stage_ends, state.restores, lines) == [(100, 120, 28.0)]
    assert jumps(state.stage_ends, [], lines) == [(100, 120, 28.0)]  # no restore yet: the stage's best
    # stage lines between a stage's last update and the next one's first; none for the run's first stage
    assert boundaries(state.stage_starts, 10, 240) == [60.5, 120.5, 180.5]
    assert boundaries(state.stage_starts, 10, 100) == [60.5]


def screen_lines(app) -> list[str]:
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


def crop(app, widget) -> list[str]:
    r = widget.region
    return [line[r.x:r.x + r.width] for line in screen_lines(app)[r.y:r.y + r.height]]


def marker_columns(plot: QualityPlot) -> dict[str, list[int]]:
    """The columns of the plot's vertical lines, by colour: plotext's orange (stage starts) and red (ends)."""
    found: dict[str, set[int]] = {}
    for line in plot.render().split("\n"):
        for span in line.spans:
            color = getattr(span.style, "color", None)
            for x in range(span.start, span.end):
                if line.plain[x] == "│" and color is not None and color.number in (1, 3):
                    found.setdefault("red" if color.number == 1 else "orange", set()).add(x)
    return {name: sorted(xs) for name, xs in found.items()}


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_run_screen_draws_the_plot_beside_the_loss_and_fits(tmp_path, size):
    run = write_quality_run(tmp_path / "run")
    app = DsdApp(attach=run, runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        screen = app.screen
        plot = screen.query_one("#quality", QualityPlot)
        assert [s.steps for s in plot.lines] == [16, 8, 4, 2] and plot.boundaries() == [60.5, 120.5, 180.5]
        for widget in (screen.query_one("#loss"), plot, screen.query_one("#histogram")):
            assert screen.region.contains_region(widget.region)
        loss = screen.query_one("#loss").region
        assert plot.region.y == loss.y and plot.region.x >= loss.right and plot.region.width >= 25
        assert plot.region.height >= 7
        shown = crop(app, plot)
        assert "agreement dB" in shown[0] and "".join(shown).count("*") == 4  # each line's best
        assert ("agreement dB · 16/8/4/2 steps" in shown[0]) == (size[0] >= 120)  # the step counts, where they fit
        columns = marker_columns(plot)
        orange, red = columns["orange"], columns["red"]
        assert len(orange) == 3 and len(red) == 1 and orange[0] < red[0] < orange[1] < orange[2]
        message = str(screen.query_one("#run-message", Static).render())
        assert END_LINE in message.replace("\n", " ") and "e exports" in message


@pytest.mark.parametrize("quality_every, words", [(0, "no agreement checks in this run (--quality-every 0)"),
                                                  (None, "no agreement check yet")])
async def test_a_run_without_checks_shows_why_in_place_of_the_plot(tmp_path, quality_every, words):
    run = write_quality_run(tmp_path / "run", quality_every=quality_every)
    app = DsdApp(attach=run, runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        plot = app.screen.query_one("#quality", QualityPlot)
        assert plot.lines == [] and plot.boundaries() == []
        assert words in " ".join(line.strip() for line in crop(app, plot))  # whole, if wrapped
        assert "ended at update" not in str(app.screen.query_one("#run-message", Static).render())
