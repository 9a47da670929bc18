"""The terminal app's training-free solvers (issue 17): the sampler screen offers DDIM, DPM-Solver++ 2M/3M and UniPC,
exports each solver's ONNX sampler once (in a subprocess, the solver passed through), samples the file of the solver
chosen and says which in its status line; DDIM stays the default, and a distilled model walked by another solver is
said to be a departure. Ctrl+G on the setup screen samples the form's (undistilled) model before distilling."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import Select, Static

from dsd_core.builtins import builtin_path
from dsd_core.defaults import SAMPLE_STEPS
from dsd_core.solvers_plan import LABEL, SAMPLERS
from dsd_tui.app import DsdApp
from dsd_tui.tui import export_job
from dsd_tui.tui.export_job import earlier_exports, export_argv, fresh_export, onnx_path, parse_argv
from dsd_tui.tui.screens.export import ExportScreen
from dsd_tui.tui.screens.sampler import SamplerScreen
from dsd_tui.tui.setup_form import CHECKPOINT, sample_request

from .tui_helpers import CATALOG, wait_for


def notified(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


def footer_keys(app) -> set[str]:
    return {key for key, active in app.screen.active_bindings.items() if active.binding.show and active.enabled}


def info(screen) -> str:
    return str(screen.query_one("#sample-info", Static).render())


# -- the export job: names, arguments, and a real export with each solver ------------------------------------------
def test_export_names_and_arguments_carry_the_solver(tmp_path):
    model = tmp_path / "m.safetensors"
    assert onnx_path(tmp_path, model, 8) == tmp_path / "m-8steps.onnx"  # DDIM keeps its old name
    assert onnx_path(tmp_path, model, 8, "unipc") == tmp_path / "m-8steps-unipc.onnx"
    assert "--sampler" not in export_argv(model, tmp_path, [2, 4])
    argv = export_argv(model, tmp_path, [2, 4], "dpm++3m")
    assert argv[argv.index("--sampler") + 1] == "dpm++3m"
    assert parse_argv(argv[3:]) == (model, tmp_path, [2, 4], "dpm++3m")
    assert parse_argv([str(model), str(tmp_path), "8"]) == (model, tmp_path, [8], "ddim")


def test_the_export_job_exports_the_solver_asked_for(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from exporters.runtime import OnnxSampler

    from .onnx_fixtures import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors", distilled_steps=None)
    out = tmp_path / "onnx"
    assert export_job.main([str(ckpt), str(out), "3", "--sampler", "dpm++2m"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    path = out / "tiny-3steps-dpm++2m.onnx"
    assert report["path"] == str(path) and report["sampler"] == "dpm++2m" and report["distilled_steps"] is None
    assert OnnxSampler(path).sampler == "dpm++2m"  # the file's own metadata says so
    assert fresh_export(out, ckpt, 3, "dpm++2m") == path
    assert fresh_export(out, ckpt, 3, "unipc") is None and fresh_export(out, ckpt, 3, "ddim") is None
    assert earlier_exports(out, ckpt) == []  # the export screen lists DDIM exports only

    # an unknown solver: one error line, exit 2, nothing written
    assert export_job.main([str(ckpt), str(tmp_path / "bad"), "3", "--sampler", "euler"]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown sampler 'euler'")
    assert not (tmp_path / "bad").exists()


# -- the sampler screen, with the ONNX sampler and the export job faked --------------------------------------------
class FakeOnnx:
    """Stands in for exporters.runtime.OnnxSampler: its solver from the file name (as export_job names files), the
    model's distilled step count from `DISTILLED`; every file it opens is recorded in `opened`."""

    provider, num_classes, image_shape = "CPUExecutionProvider", 0, (1, 8, 8)
    DISTILLED: int | None = None
    opened: list[Path] = []
    threads: list[int | None] = []

    def __init__(self, path, threads=None, provider="auto"):
        path = Path(path)
        self.opened.append(path)
        FakeOnnx.threads.append(threads)
        stem, _, tail = path.stem.rpartition("steps")
        self.steps = int(stem.rsplit("-", 1)[-1])
        self.sampler = tail.lstrip("-") or "ddim"
        self.metadata = {"distilled_steps": self.DISTILLED, "sampler": self.sampler}

    def sample(self, num, seed, class_labels=None):
        return (np.random.default_rng(seed).random((num, 1, 8, 8)) ** 3).astype(np.float32)


@pytest.fixture
def fakes(monkeypatch):
    """The fake ONNX sampler and a fake export job that records each request (model, out_dir, steps, sampler), then
    writes what export_job writes: the ONNX file (empty) and its report beside it, and the report line."""
    import exporters.runtime

    requests: list[tuple] = []
    FakeOnnx.opened, FakeOnnx.threads = [], []
    FakeOnnx.DISTILLED = None
    monkeypatch.setattr(exporters.runtime, "OnnxSampler", FakeOnnx)

    def fake_argv(model, out_dir, steps, sampler="ddim"):
        requests.append((Path(model), Path(out_dir), list(steps), sampler))
        reports = [{"path": str(onnx_path(out_dir, model, n, sampler)), "steps": n, "sampler": sampler,
                    "max_abs_diff": 1e-6, "seconds": 0.1, "source": str(model)} for n in steps]
        script = ("import json, pathlib\n"
                  f"for r in {reports!r}:\n"
                  "    p = pathlib.Path(r['path']); p.parent.mkdir(parents=True, exist_ok=True); p.write_bytes(b'')\n"
                  "    line = json.dumps(r); p.with_suffix('.json').write_text(line + '\\n'); print(line)\n")
        return [sys.executable, "-c", script]

    monkeypatch.setattr("dsd_tui.tui.screens.sampler.export_argv", fake_argv)
    monkeypatch.setattr("dsd_tui.tui.screens.export.export_argv", fake_argv)
    return requests


def ddim_exports(tmp_path: Path, steps=(4, 8)) -> tuple[Path, dict[int, Path]]:
    """A model file and its DDIM exports with their reports, as the export screen leaves them."""
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"weights")
    files = {}
    for n in steps:
        path = onnx_path(tmp_path / "onnx", model, n)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
        path.with_suffix(".json").write_text(json.dumps({"path": str(path), "steps": n, "source": str(model)}))
        files[n] = path
    return model, files


async def open_sampler(app, pilot, files, save_dir, **kwargs) -> SamplerScreen:
    app.push_screen(SamplerScreen(files, save_dir, **kwargs))
    await pilot.pause()
    screen = app.screen
    await wait_for(pilot, lambda: screen.latest is not None, what="the first samples")
    return screen


async def test_v_cycles_the_solvers_each_exported_once_and_sampled_from_its_own_file(tmp_path, fakes):
    model, files = ddim_exports(tmp_path)
    out = tmp_path / "onnx"
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_sampler(app, pilot, files, out)  # the source model: from the exports' reports
        assert screen.source == model and "v" in footer_keys(app) and screen.query_one("#solver").display
        assert (screen.latest.sampler, screen.latest.steps) == ("ddim", 4)  # DDIM by default
        assert FakeOnnx.opened == [files[4]] and fakes == []
        assert FakeOnnx.threads == [app.sample_threads]  # every usable core unless --threads: no spinning there
        assert "seed 0 · 4 steps · DDIM ·" in info(screen)

        for i, solver in enumerate(SAMPLERS[1:]):
            await pilot.press("v")
            await wait_for(pilot, lambda s=solver: screen.latest.sampler == s, what=f"samples of {solver}")
            assert fakes[i] == (model, out, [4], solver)  # exported from the source model, the solver passed on
            assert screen.latest.path == onnx_path(out, model, 4, solver)
            assert f"4 steps · {LABEL[solver]} ·" in info(screen)
            assert "distilled" not in info(screen)  # an undistilled model: nothing to say
        assert len(fakes) == 3

        await pilot.press("v")  # back to DDIM: its file, nothing exported
        await wait_for(pilot, lambda: screen.latest.sampler == "ddim", what="DDIM again")
        assert screen.latest.path == files[4] and len(fakes) == 3

        await pilot.press("v")  # dpm++2m again: exported this session, so not again
        await wait_for(pilot, lambda: screen.latest.sampler == "dpm++2m", what="dpm++2m again")
        assert len(fakes) == 3

        await pilot.press("]")  # more steps keep the solver: its 8-step file is exported now
        await wait_for(pilot, lambda: screen.latest.steps == 8, what="8 steps")
        assert fakes[-1] == (model, out, [8], "dpm++2m") and screen.latest.sampler == "dpm++2m"
        assert screen.latest.path == onnx_path(out, model, 8, "dpm++2m")

        await pilot.press("s")
        await pilot.pause()
        assert (out / "samples-8steps-dpm++2m-seed0.png").is_file()  # the solver in the saved grid's name

    # a later session finds the solvers' exports still current: choosing one exports nothing
    fakes.clear()
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_sampler(app, pilot, files, out)
        screen.query_one("#solver", Select).value = "unipc"
        await wait_for(pilot, lambda: screen.latest.sampler == "unipc", what="unipc")
        assert fakes == [] and screen.latest.path == onnx_path(out, model, 4, "unipc")


async def test_a_distilled_model_keeps_ddim_and_another_solver_is_said_to_depart(tmp_path, fakes):
    FakeOnnx.DISTILLED = 4
    model, files = ddim_exports(tmp_path, steps=(4,))
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_sampler(app, pilot, files, tmp_path / "onnx")
        assert screen.latest.sampler == "ddim" and "distilled" not in info(screen)  # its default, nothing to say
        assert not notified(app)
        screen.query_one("#solver", Select).value = "unipc"
        await wait_for(pilot, lambda: screen.latest.sampler == "unipc", what="unipc")
        assert fakes == [(model, tmp_path / "onnx", [4], "unipc")]  # allowed on a distilled model
        assert "UniPC (bh2) (distilled for 4-step DDIM)" in info(screen)
        said = notified(app)
        assert len(said) == 1 and said[0] == ("m was distilled for 4-step DDIM, its default sampler; sampling it "
                                              "with UniPC (bh2) as asked")
        await pilot.press("n")  # said once per solver, not at every seed
        await wait_for(pilot, lambda: screen.latest.seed == 1, what="seed 1")
        assert len(notified(app)) == 1


async def test_without_a_model_to_export_from_only_ddim_is_offered(tmp_path, fakes):
    files = {2: tmp_path / "m-2steps.onnx"}  # no report beside it: its source is unknown
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sampler(app, pilot, files, tmp_path)
        assert screen.source is None and not screen.query_one("#solver").display
        assert "v" not in footer_keys(app)
        await pilot.press("v")
        await pilot.pause()
        assert fakes == [] and screen.solver == "ddim" and "2 steps · DDIM" in info(screen)


async def test_a_failed_solver_export_says_why(tmp_path, fakes, monkeypatch):
    _, files = ddim_exports(tmp_path, steps=(4,))
    monkeypatch.setattr("dsd_tui.tui.screens.sampler.export_argv", lambda *a: [
        sys.executable, "-c", "print('error: cannot export [this]'); raise SystemExit(2)"])
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_sampler(app, pilot, files, tmp_path / "onnx")
        await pilot.press("v")
        await wait_for(pilot, lambda: "failed" in info(screen), what="the failure")
        assert "export of dpm++2m failed: error: cannot export [this]" in info(screen)
        assert screen.latest.sampler == "ddim"  # nothing sampled with a solver that has no file


async def test_a_real_solver_export_in_a_subprocess_is_sampled_with_that_solver(tmp_path, capsys):
    """No fakes: the DDIM export as the export screen makes it, then `v` exports DPM-Solver++(2M) through
    `python -m dsd_tui.tui.export_job … --sampler dpm++2m` and onnxruntime samples it."""
    pytest.importorskip("onnxruntime")
    from .onnx_fixtures import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors", distilled_steps=None)
    out = tmp_path / "onnx"
    assert export_job.main([str(ckpt), str(out), "2"]) == 0
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_sampler(app, pilot, {2: onnx_path(out, ckpt, 2)}, out)
        ddim = screen.latest.images
        await pilot.press("v")
        await wait_for(pilot, lambda: screen.latest.sampler == "dpm++2m" or "failed" in info(screen), timeout=180,
                       what="the dpm++2m export and its samples")
        assert screen.latest.sampler == "dpm++2m", info(screen)  # as the exported file's metadata says
        assert onnx_path(out, ckpt, 2, "dpm++2m").is_file() and "DPM-Solver++(2M)" in info(screen)
        assert not np.allclose(screen.latest.images, ddim)  # a second-order step: other images, same noise


# -- Ctrl+G: sample the form's model before distilling -------------------------------------------------------------
def test_sample_request_from_the_form(tmp_path):
    request, errors = sample_request({"model": "digits-v"}, CATALOG.models, tmp_path)
    assert errors == {} and request.model == builtin_path("digits-v")
    assert request.out_dir == tmp_path / "samplers" / "digits-v" and request.steps == SAMPLE_STEPS
    request, _ = sample_request({"model": "digits-v-dsd8"}, CATALOG.models, tmp_path)
    assert request.steps == 8  # a shipped distilled model: its own step count
    ckpt = tmp_path / "mine.safetensors"
    ckpt.write_bytes(b"")
    request, _ = sample_request({"model": CHECKPOINT, "path": str(ckpt)}, CATALOG.models, tmp_path)
    assert request.model == ckpt and request.out_dir == tmp_path / "samplers" / "mine"
    assert sample_request({"model": CHECKPOINT, "path": ""}, CATALOG.models, tmp_path)[1] == {
        "path": "give a checkpoint file to sample"}
    assert "not a checkpoint file" in sample_request({"model": CHECKPOINT, "path": str(tmp_path)}, CATALOG.models,
                                                     tmp_path)[1]["path"]


async def test_ctrl_g_samples_the_undistilled_model_and_its_sampler_offers_the_solvers(tmp_path, fakes):
    app = DsdApp(runs_root=tmp_path / "runs", catalog=CATALOG)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.screen.query_one("#model", Select).value = "digits-v"
        await pilot.pause()
        assert "ctrl+g" in footer_keys(app)
        await pilot.press("ctrl+g")
        await pilot.pause()
        export = app.screen
        assert isinstance(export, ExportScreen)
        await wait_for(pilot, lambda: not export.busy, what="the export")
        out = tmp_path / "runs" / "samplers" / "digits-v"
        assert fakes == [(builtin_path("digits-v"), out, [SAMPLE_STEPS], "ddim")]  # DDIM first, as for a run

        await pilot.press("s")
        sampler = app.screen
        assert isinstance(sampler, SamplerScreen)
        await wait_for(pilot, lambda: sampler.latest is not None, what="samples")
        assert sampler.source == builtin_path("digits-v") and sampler.latest.sampler == "ddim"
        await pilot.press("v", "v")  # to dpm++3m (the dpm++2m export is cancelled or left unused)
        await wait_for(pilot, lambda: sampler.latest.sampler == "dpm++3m", what="dpm++3m")
        assert fakes[-1] == (builtin_path("digits-v"), out, [SAMPLE_STEPS], "dpm++3m")
        assert sampler.latest.path == onnx_path(out, builtin_path("digits-v"), SAMPLE_STEPS, "dpm++3m")
        assert f"{SAMPLE_STEPS} steps · DPM-Solver++(3M) ·" in info(sampler)
    assert not any((tmp_path / "runs").glob("*/config.json"))  # no run folder made


async def test_ctrl_g_without_a_checkpoint_file_marks_the_field(tmp_path, fakes):
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.screen.query_one("#model", Select).value = CHECKPOINT
        await pilot.pause()
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert not isinstance(app.screen, ExportScreen) and fakes == []
        assert "give a checkpoint file to sample" in str(app.screen.query_one("#path-error", Static).render())


async def test_the_sampler_names_the_classes_its_export_names(tmp_path, fakes, monkeypatch):
    """An export whose metadata names its classes (emoji categories): the class select and the status line show
    the names; `c` steps through them."""
    from dsd_core.classes import EMOJI_CATEGORIES

    monkeypatch.setattr(FakeOnnx, "num_classes", len(EMOJI_CATEGORIES), raising=False)
    monkeypatch.setattr(FakeOnnx, "class_names", EMOJI_CATEGORIES, raising=False)
    _, files = ddim_exports(tmp_path)
    app = DsdApp(runs_root=tmp_path, catalog=CATALOG)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_sampler(app, pilot, files, tmp_path / "onnx")
        await wait_for(pilot, lambda: screen.class_names == EMOJI_CATEGORIES, what="the class names")
        options = [str(prompt) for prompt, _ in screen.query_one("#class", Select)._options]
        assert options[1:] == [f"{k} {name}" for k, name in enumerate(EMOJI_CATEGORIES)]
        await pilot.press("c")  # class 0 (Select.BLANK is False == 0: it once read as "any class")
        await wait_for(pilot, lambda: screen.latest.label == 0, what="class 0")
        assert f"class 0 {EMOJI_CATEGORIES[0]}" in info(screen)
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.latest.label == 1, what="class 1")
        assert f"class 1 {EMOJI_CATEGORIES[1]}" in info(screen)
