"""Untrusted input reaching the screen (issue 18, the last "Medium" classes): every field of an event log, text
from file names, metadata and logs printed by the CLI and the terminal app, and diffusers' own output on a load.
The app must not crash on any event; printed text must be plain, one line, free of terminal controls; a diffusers
load prints nothing of diffusers' own, and a config that does not fit its weights is one line with the reason."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image
from textual.widgets import DataTable, Static

from dsd_core import events as ev
from dsd_core.checkpoint import load_model, save_model
from dsd_core.errors import DsdError
from dsd_core.schedule import NoiseSchedule
from dsd_core.text import safe_text
from dsd_tui.app import DsdApp
from dsd_tui.tui.runstate import PLOT_LIMIT, RunState
from dsd_tui.tui.screens.run import RunScreen
from dsd_tui.tui.widgets.histogram import StepFrequencyBars
from dsd_tui.tui.widgets.loss_plot import LossPlot
from dsd_tui.tui.widgets.quality_plot import QualityPlot

from .reliability_helpers import assert_one_line_error, dsd
from .tui_helpers import CATALOG, write_finished_run

# -- class: every field of an event is untrusted (the TUI) -------------------------------------------------------

T = 1_700_000_100
BIG = "9" * 400  # Python's JSON reads it as an int of 1329 bits
HOSTILE = {  # name: lines appended to a run's log (raw JSON text: Infinity, NaN and 1e400 are what Python reads)
    "loss 1e400": [f'{{"event": "loss", "time": {T}, "update": 9, "loss": 1e400}}'],
    "loss Infinity": [f'{{"event": "loss", "time": {T}, "update": 9, "loss": Infinity}}'],
    "loss -Infinity": [f'{{"event": "loss", "time": {T}, "update": 9, "loss": -Infinity}}'],
    "loss NaN": [f'{{"event": "loss", "time": {T}, "update": 9, "loss": NaN, "grad_norm": NaN}}'],
    "loss ±1e308": [f'{{"event": "loss", "time": {T}, "update": 9, "loss": 1e308}}',
                    f'{{"event": "loss", "time": {T + 1}, "update": 10, "loss": -1e308}}'],
    "loss a huge int": [f'{{"event": "loss", "time": {T}, "update": 9, "loss": {BIG}}}'],
    "loss a string": [f'{{"event": "loss", "time": {T}, "update": 9, "loss": "low"}}'],
    "loss nested junk": [f'{{"event": "loss", "time": {T}, "update": 9, "loss": {{"a": [1, {{"b": null}}]}}}}'],
    "loss true": [f'{{"event": "loss", "time": {T}, "update": 9, "loss": true}}'],
    "update negative": [f'{{"event": "loss", "time": {T}, "update": -5, "loss": 0.1}}'],
    "update huge int": [f'{{"event": "loss", "time": {T}, "update": {BIG}, "loss": 0.1}}'],
    "update 2**62": [f'{{"event": "loss", "time": {T}, "update": {2**62}, "loss": 0.1}}'],
    "update a float": [f'{{"event": "loss", "time": {T}, "update": 9.5, "loss": 0.1}}'],
    "time Infinity": ['{"event": "loss", "time": Infinity, "update": 9, "loss": 0.1}'],
    "time 1e300": ['{"event": "loss", "time": 1e300, "update": 9, "loss": 0.1}'],
    "quality psnr Infinity": [f'{{"event": "quality", "time": {T}, "update": 8, "steps": 2, "mse": 0, '
                              '"psnr": Infinity, "best": true}'],
    "quality psnr 1e400": [f'{{"event": "quality", "time": {T}, "update": 8, "steps": 2, "mse": 0, "psnr": 1e400}}'],
    "quality psnr NaN, fd NaN": [f'{{"event": "quality", "time": {T}, "update": 8, "steps": 2, "mse": NaN, '
                                 '"psnr": NaN, "fd": NaN, "precision": Infinity}'],
    "quality fd NaN": [f'{{"event": "quality", "time": {T}, "update": 8, "steps": 2, "mse": 0.1, "psnr": 20.5, '
                       '"fd": NaN}'],
    "restore psnr NaN after a stage end": [
        f'{{"event": "stage_end", "time": {T}, "update": 8, "steps": 2, "skipped": {2**62}, "checks": 3}}',
        f'{{"event": "restore", "time": {T}, "update": 8, "steps": 2, "psnr": NaN, "path": "x"}}'],
    "histogram 1e400 and negative counts": [
        f'{{"event": "histogram", "time": {T}, "update": 8, "finest_grid": [1, 0], "per_index": [1e400, 1]}}',
        f'{{"event": "histogram", "time": {T}, "update": 8, "finest_grid": [1, 0], "per_index": [-3, 1]}}'],
    "histogram of 10**5 + 1 bins": [json.dumps({"event": "histogram", "time": T, "update": 8, "finest_grid": [0],
                                                "per_index": [1] * (10**5 + 1)})],
    "histogram counts of 2**62": [json.dumps({"event": "histogram", "time": T, "update": 8,
                                              "finest_grid": [1, 0], "per_index": [2**62, 2**62 - 1, 0]})],
    "stage of 10**12 steps first": [json.dumps({"event": "config", "time": T, "distill": {"method": 3},
                                                "stages": [{"steps": 10**12}]}),
                                    json.dumps({"event": "stage", "time": T, "index": 0, "steps": 10**12,
                                                "target_steps": 2, "updates": 3})],
    "config of junk types": [json.dumps({"event": "config", "time": T, "threads": 2, "stages": [{"steps": "many"}],
                                         "distill": {"method": ["dsd"], "schedule": {"a": 1}, "n_from": "8",
                                                     "n_to": -2, "updates": 1.5, "quality_every": "often"}}),
                             f'{{"event": "config", "time": {T}, "distill": {{"updates": 1e400}}}}'],
    "end with NaN and tiny wall time": [f'{{"event": "end", "time": {T}, "update": 8, "model": "m", '
                                       '"wall_seconds": NaN}',
                                       f'{{"event": "end", "time": {T}, "update": 8, "model": "m", '
                                       '"wall_seconds": 1e-320}'],
    "unknown kinds, not objects, torn, deep": ['{"event": "newer", "time": 1, "x": [Infinity]}', "[1, 2]", "null",
                                               '"text"', "{}", '{"event": 7}', "[" * 100_000,
                                               '{"event": "loss", "update": ' + "9" * 5000 + "}", "\udcff\udcfe"],
    "text with markup and controls": [
        json.dumps({"event": "warning", "time": T, "update": 8, "message": "[/red] [link=http://x]x[/link] \x1b[31m"}),
        json.dumps({"event": "samples", "time": T, "update": 8, "path": "a\x00b.png", "label": "[/b]\x1b]0;t\x07"}),
        json.dumps({"event": "error", "time": T, "update": 8, "message": "[@click=app.quit]q[/] \n error: forged"})],
}


def hostile_run(run_dir, lines: list[str]):
    """A run of 8 updates whose log then holds `lines`, then one good loss (update 11): reading goes on."""
    run = write_finished_run(run_dir, updates=8, ended=False)
    with open(run / "events.jsonl", "a", encoding="utf-8", errors="surrogateescape") as f:
        for line in [*lines, f'{{"event": "loss", "time": {T + 5}, "update": 11, "loss": 0.25}}']:
            f.write(line + "\n")
    return run


async def test_the_app_shows_a_run_whatever_its_events_say(tmp_path):
    """Each run of HOSTILE opened in turn in one app: it shows (status, plots, bars, drawn), and only drawable
    numbers reach the plots. (One app for all: a crash names the case it came on.)"""
    runs = {name: hostile_run(tmp_path / f"run{i}", lines) for i, (name, lines) in enumerate(HOSTILE.items())}
    app = DsdApp(runs_root=tmp_path / "none", catalog=CATALOG, hang_after=1e9)
    case = "starting the app"
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            for case, run in runs.items():
                app.push_screen(RunScreen(run, None))
                await pilot.pause()
                screen = app.screen
                assert isinstance(screen, RunScreen) and app.is_running, case
                status = str(screen.query_one("#run-status", Static).render())
                assert "stage" in status and "update" in status and "\x1b" not in status, case
                loss, quality = screen.query_one(LossPlot), screen.query_one(QualityPlot)
                assert loss.losses[-1] == 0.25, case
                assert all(math.isfinite(y) and abs(y) <= PLOT_LIMIT for y in loss.losses), case
                assert all(math.isfinite(y) for line in quality.lines for y in line.psnr), case
                assert all(math.isfinite(level) for *_, level in quality.jumps), case
                screen.query_one(StepFrequencyBars).render()  # the bars draw
                app.pop_screen()
            await pilot.press("question_mark")  # the app still answers keys
            await pilot.pause()
            case = "the help screen"
            assert app.is_running
    except AssertionError:
        raise
    except Exception as exc:  # a crash inside the app comes out of run_test
        raise AssertionError(f"the app crashed on {case}: {exc!r}") from exc


HOSTILE_CONFIGS = {
    "updates a string": '{"command": "distill", "distill": {"method": "dsd", "updates": "many"}}',
    "updates 1e400": '{"command": "distill", "distill": {"updates": 1e400, "n_from": -3, "n_to": 2.5}}',
    "distill a list": '{"command": "distill", "distill": [1]}',
    "config a list": '[{"command": "distill"}]',
    "method markup": '{"command": "distill", "distill": {"method": "[red]x[/red]", "schedule": {"a": 1}}}',
}


async def test_the_home_screen_lists_runs_whatever_their_config_says(tmp_path):
    from dsd_tui.tui.recent import recent_runs

    for i, text in enumerate(HOSTILE_CONFIGS.values()):
        (tmp_path / f"run{i}").mkdir()
        (tmp_path / f"run{i}" / "config.json").write_text(text)
    listed = {r.path.name: r for r in recent_runs(tmp_path)}
    assert set(listed) == {"run0", "run1", "run4"}  # the ones that are a distill run's dict
    assert listed["run0"].updates == 0 and listed["run1"].steps == "?→?" and listed["run4"].schedule == "?"
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.is_running


def test_event_numbers_are_counts_and_times_are_finite():
    """The reader's types: an int is a count in [0, 2⁶³), a time is finite; NaN and inf floats are kept."""
    assert ev.parse_line('{"event": "loss", "update": -1, "loss": 0.1}') is None
    assert ev.parse_line('{"event": "loss", "update": %d, "loss": 0.1}' % 2**63) is None
    assert ev.parse_line('{"event": "loss", "update": %d, "loss": 0.1}' % (2**63 - 1)).update == 2**63 - 1
    assert ev.parse_line('{"event": "loss", "update": 1, "loss": %s}' % BIG) is None
    assert ev.parse_line('{"event": "loss", "update": 1, "loss": true}') is None
    assert ev.parse_line('{"event": "loss", "time": Infinity, "update": 1, "loss": 0.1}') is None
    assert ev.parse_line('{"event": "loss", "time": NaN, "update": 1, "loss": 0.1}') is None
    assert ev.parse_line('{"event": "loss", "update": 1, "loss": -3}').loss == -3  # an int is a float
    assert math.isnan(ev.parse_line('{"event": "loss", "update": 1, "loss": NaN}').loss)
    assert ev.parse_line('{"event": "histogram", "finest_grid": [1], "per_index": [-1]}') is None
    assert ev.parse_line("[" * 100_000) is None


def test_the_state_leaves_undrawable_numbers_out():
    """A NaN loss is a gap (the update still counts); an inf PSNR is no check; a NaN restore level is unknown;
    a rate or ETA that is not finite is not shown."""
    state = RunState()
    for line in ('{"event": "config", "time": 1, "distill": {"updates": %d}}' % 2**62,
                 '{"event": "loss", "time": 1, "update": 1, "loss": 0.5}',
                 '{"event": "loss", "time": 2, "update": 2, "loss": NaN}',
                 '{"event": "loss", "time": 3, "update": 3, "loss": 1e301}',
                 '{"event": "quality", "time": 3, "update": 3, "steps": 2, "mse": 0, "psnr": Infinity}',
                 '{"event": "restore", "time": 3, "update": 3, "steps": 2, "psnr": NaN, "path": "p"}',
                 '{"event": "loss", "time": 1e300, "update": 4, "loss": 0.25}'):
        state.apply(ev.parse_line(line))
    assert (state.updates, state.losses, state.update) == ([1, 4], [0.5, 0.25], 4)
    assert state.quality == [] and state.restores == [(3, 2, None)]
    assert state.rate() == 3 / (1e300 - 1) and state.eta_seconds() is None  # 2⁶² updates at 3e-300 upd/s: inf


# -- class: untrusted text reaches the terminal as plain text --------------------------------------------------

@pytest.mark.parametrize("raw, shown", [
    ("plain ünïcode name.png", "plain ünïcode name.png"),
    ("a\nerror: forged.png", "a\\nerror: forged.png"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("tab\there\r", "tab\\there\\r"),
    ("bell\x07 del\x7f csi\x9b", "bell\\x07 del\\x7f csi\\x9b"),
    ("line\u2028sep\x85next", "line\\u2028sep\\x85next"),
    ("abc\u202egnp.exe", "abc\\u202egnp.exe"),  # right-to-left override: would show as "abcexe.png"
    ("not utf-8 \udcff", "not utf-8 \\udcff"),  # os.fsdecode of a name with byte 0xff
    ("[link=http://x]click[/link]", "[link=http://x]click[/link]"),  # markup is the printer's business
])
def test_safe_text_makes_controls_visible(raw, shown):
    assert safe_text(raw) == shown
    assert safe_text(shown) == shown and len(shown.splitlines()) == 1


def test_dsd_info_prints_provenance_as_plain_text(tiny_model, tmp_path):
    """Rich markup in a checkpoint's metadata is shown, not rendered (no link); no ESC byte reaches the terminal,
    from the metadata or from the file's name."""
    provenance = {"made_by": "[link=http://x]click[/link] \x1b[31mred", "[b]note": "[red]x[/red]"}
    ckpt = save_model(tmp_path / "m\x1b[2J.safetensors", tiny_model, NoiseSchedule("linear"), "eps", ema=True,
                      provenance=provenance)
    for args in ([], ["--json"]):
        result = dsd("info", ckpt, *args)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output
        assert "[link=http://x]click[/link]" in result.output and "[b]note" in result.output
    assert "[red]x[/red]" in result.output and "m\\x1b[2J.safetensors" in dsd("info", ckpt).output


def data_folder(tmp_path, good: int):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(good):
        Image.fromarray(np.full((8, 8), 60 * i, np.uint8), "L").save(data / f"{i}.png")
    (data / "a\nerror: forged.png").write_bytes(b"not a png")
    (data / "b\x1b]0;title\x07.txt").write_text("not an image")
    (data / "c\u202egnp.exe.png").write_bytes(b"not a png either")
    return data


TRAIN = ["--steps", 1, "--batch", 2, "--channels", 16, "--mults", "1,2", "--attention", "", "--threads", 1]


def test_data_file_names_cannot_forge_lines(tmp_path):
    """Skipped data files are named on one warning line each, their controls visible; with no image left, the
    only `error:` line is dsd's own."""
    result = dsd("train", "--data", data_folder(tmp_path, good=2), "--out", tmp_path / "run", *TRAIN)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert all(line.startswith("warning:") for line in lines) and "\x1b" not in result.stderr, result.stderr
    assert any("a\\nerror: forged.png" in line for line in lines) and "b\\x1b]0;title\\x07.txt" in result.stderr
    assert "c\\u202egnp.exe.png" in result.stderr
    shutil.rmtree(tmp_path / "data")
    result = dsd("train", "--data", data_folder(tmp_path, good=0), "--out", tmp_path / "run2", *TRAIN)
    lines = result.stderr.splitlines()
    assert result.exit_code == 2 and [line.split(":")[0] for line in lines] == ["warning"] * 3 + ["error"]
    assert "no readable images" in lines[-1] and "\x1b" not in result.stderr


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file names must be UTF-8")
def test_a_data_file_name_that_is_not_utf8_is_named_visibly(tmp_path):
    data = data_folder(tmp_path, good=1)
    try:
        with open(bytes(data) + b"/\xff.png", "wb"):  # not UTF-8: Python sees the lone surrogate \udcff
            pass
    except OSError:
        pytest.skip("this file system takes UTF-8 names only")
    result = dsd("train", "--data", data, "--out", tmp_path / "run", *TRAIN)
    assert result.exit_code == 0 and "\\udcff.png" in result.stderr, result.output


def test_an_error_naming_a_hostile_path_is_one_line(tmp_path):
    model = tmp_path / "m\nerror: forged [red]x[/red] \x1b[31m.safetensors"
    line = assert_one_line_error(dsd("sample", "--model", model, "--steps", 1, tmp_path / "o.png"), "not found")
    assert "m\\nerror: forged [red]x[/red] \\x1b[31m.safetensors" in line
    data = tmp_path / "d\nerror: no"
    assert "d\\nerror: no" in assert_one_line_error(dsd("train", "--data", data, "--out", tmp_path / "r", *TRAIN))


async def test_the_app_shows_hostile_run_names_and_texts_as_plain_text(tmp_path):
    """A run folder named with markup and controls is listed on the home screen and opened; its events' texts
    (a label, a warning, then an error) show literally."""
    name = "[b]run[/b] \x1b[31m\nnext [@click=app.quit]"
    run = write_finished_run(tmp_path / name, updates=8, ended=False)
    with open(run / "events.jsonl", "a") as f:
        f.write(json.dumps({"event": "warning", "time": T, "message": "[/red] \x1b[2J [link=http://x]x[/link]"}) + "\n")
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG, hang_after=1e9)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#recent", DataTable)
        assert "\x1b" not in str(table.get_row_at(0)[0])
        app.open_run(run)
        await pilot.pause()
        screen = app.screen
        said = str(screen.query_one("#run-message", Static).render())
        assert "[/red] \\x1b[2J [link=http://x]x[/link]" in said and screen.sub_title == safe_text(run)
        with open(run / "events.jsonl", "a") as f:
            f.write(json.dumps({"event": "error", "time": T, "message": "[/b] \n error: forged"}) + "\n")
        await pilot.pause(0.4)
        said = str(screen.query_one("#run-message", Static).render())
        assert said == "run error: [/b] \\n error: forged" and app.is_running


# -- class: diffusers loads print nothing of diffusers' own -------------------------------------------------------

@pytest.fixture(scope="module")
def attn_pipeline(tmp_path_factory):
    """A tiny DDPMPipeline folder whose UNet has attention in its first down and last up block."""
    diffusers = pytest.importorskip("diffusers")
    import torch

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(16, 32), down_block_types=("AttnDownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "AttnUpBlock2D"), norm_num_groups=8)
    folder = tmp_path_factory.mktemp("attn") / "pipe"
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(str(folder))
    return folder


def with_config(src, dst, **changes):
    shutil.copytree(src, dst)
    config = dst / "unet" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **changes}))
    return dst


class Said(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_a_diffusers_load_is_silent_and_restores_diffusers_settings(attn_pipeline, tmp_path):
    """No diffusers log record of warning level, no Python warning, during loads that made diffusers talk (no
    accelerate; weights left over): diffusers' verbosity and progress bars are as they were afterwards."""
    import diffusers

    log = diffusers.utils.logging
    said, before = Said(), log.get_verbosity()
    logging.getLogger("diffusers").addHandler(said)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_model(attn_pipeline)
            with pytest.raises(DsdError, match="does not fit its weights file"):
                load_model(with_config(attn_pipeline, tmp_path / "bad", down_block_types=["DownBlock2D"] * 2,
                                       up_block_types=["UpBlock2D"] * 2))
    finally:
        logging.getLogger("diffusers").removeHandler(said)
    assert [r.getMessage() for r in said.records if r.levelno >= logging.WARNING] == [] and caught == []
    assert log.get_verbosity() == before and log.is_progress_bar_enabled()


def test_dsd_info_of_a_diffusers_folder_prints_only_its_table(attn_pipeline):
    """End to end, in a fresh process (diffusers logs to the stderr it found at import): nothing on stderr."""
    result = subprocess.run([sys.executable, "-m", "dsd_tui.cli", "info", str(attn_pipeline)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "UNet2DModel" in result.stdout or "diffusers" in result.stdout


MISMATCHES = {  # config.json changes → what the one line says
    "no attention where the weights have it": ({"down_block_types": ["DownBlock2D", "DownBlock2D"],
                                                "up_block_types": ["UpBlock2D", "UpBlock2D"]},
                                               "30 weights of the file have no place in it, e.g. down_blocks.0."),
    "narrower blocks, as many weights": ({"layers_per_block": 2, "block_out_channels": [8, 16]},
                                         "weights differ in shape, e.g. conv_in.bias is (16,) in the file but (8,) "
                                         "in the UNet"),
    "wider blocks": ({"block_out_channels": [16, 40]}, "config.json describes a UNet of"),
}


@pytest.mark.parametrize("case", MISMATCHES)
def test_a_config_that_does_not_fit_its_weights_is_one_line(case, attn_pipeline, tmp_path):
    changes, needle = MISMATCHES[case]
    bad = with_config(attn_pipeline, tmp_path / "bad", **changes)
    line = assert_one_line_error(dsd("info", bad), f"{bad / 'unet'}: ", needle, "not loaded")
    assert len(line) < 400  # the reason, not every weight


def test_weights_renamed_in_the_file_are_missing_and_left_over(attn_pipeline, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = with_config(attn_pipeline, tmp_path / "bad")
    file = bad / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(file))
    tensors["conv_in.renamed"] = tensors.pop("conv_in.weight")
    save_file(tensors, str(file))
    needles = ["1 weights of the file have no place in it, e.g. conv_in.renamed",
               "1 of its weights are missing from the file, e.g. conv_in.weight"]
    if importlib.util.find_spec("accelerate") is not None:  # diffusers then refuses missing weights itself
        needles = ["conv_in"]
    assert_one_line_error(dsd("sample", "--model", bad, "--steps", 1, tmp_path / "o.png"), *needles)
    assert not (tmp_path / "o.png").exists()


def test_report_lines_print_file_names_as_plain_text(tiny_ckpt, tmp_path):
    """`wrote …` lines name files the user or a folder chose: markup stays literal, controls are escaped."""
    out = tmp_path / "[red]x[bold]\x1b[31m.npz"
    result = dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 2, "--threads", 1, out)
    assert result.exit_code == 0, result.output
    assert "[red]x[bold]\\x1b[31m.npz" in result.stdout and "\x1b" not in result.stdout
