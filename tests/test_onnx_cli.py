"""`dsd export --onnx` and `dsd sample` of .onnx models / `--backend ort` / `--watch`, end to end."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from dsd_tui.cli import app

from .onnx_fixtures import STEPS, tiny_checkpoint
from .test_cli import assert_one_line_error

runner = CliRunner()


def run(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    ckpt = tiny_checkpoint(folder / "m.safetensors")
    result = run("export", "--onnx", "--model", ckpt, "--threads", 1, folder / "m.onnx")
    assert result.exit_code == 0, result.output
    return ckpt, folder / "m.onnx", result.stdout


def test_export_reports_the_parity(exported):
    _, path, stdout = exported
    assert path.is_file() and f"{STEPS}-step sampler" in stdout and "max abs diff" in stdout
    diff = float(stdout.split("max abs diff")[1].split()[0])
    assert 0 <= diff <= 1e-4


def test_sample_onnx_equals_torch(exported, tmp_path):
    ckpt, path, _ = exported
    result = run("sample", "--model", path, "--steps", STEPS, "--num", 5, "--seed", 2, "--threads", 1,
                 tmp_path / "o.npz")
    assert result.exit_code == 0, result.output
    assert "onnxruntime CPUExecutionProvider" in result.stdout
    run("sample", "--model", ckpt, "--steps", STEPS, "--num", 5, "--seed", 2, tmp_path / "t.npz")
    ort_images, torch_images = (np.load(tmp_path / f"{n}.npz")["arr_0"].astype(int) for n in "ot")
    assert ort_images.shape == (5, 8, 8, 1) and np.abs(ort_images - torch_images).max() <= 1


def test_backend_ort_exports_once_to_the_cache(tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("DSD_CACHE_DIR", str(tmp_path / "cache"))
    args = ["sample", "--model", tiny_ckpt, "--steps", 2, "--num", 3, "--backend", "ort", "--threads", 1]
    first = run(*args, tmp_path / "a.npz")
    assert first.exit_code == 0, first.output
    (cached,) = (tmp_path / "cache" / "onnx").glob("*-2steps.onnx")
    stamp = cached.stat().st_mtime_ns
    second = run(*args, tmp_path / "b.npz")
    assert second.exit_code == 0 and "exporting" not in second.output
    assert cached.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["arr_0"], np.load(tmp_path / "b.npz")["arr_0"])


def test_watch_draws_a_new_grid_per_key(exported, tmp_path):
    _, path, _ = exported
    out = tmp_path / "w.npz"
    result = run("sample", "--model", path, "--num", 2, "--threads", 1, "--watch", out, input="\n\nq\n")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())  # rich wraps long lines
    assert [f"seed {s})" in said for s in (0, 1, 2, 3)] == [True, True, True, False]
    again = tmp_path / "s2.npz"
    run("sample", "--model", path, "--num", 2, "--seed", 2, "--threads", 1, again)
    np.testing.assert_array_equal(np.load(out)["arr_0"], np.load(again)["arr_0"])


def test_bad_input_gives_one_line(exported, tmp_path):
    ckpt, path, _ = exported
    assert_one_line_error(run("sample", "--model", path, "--steps", 4, tmp_path / "o.png"), "samples in 3 steps")
    assert_one_line_error(run("sample", "--model", path, "--spacing", "leading", tmp_path / "o.png"), "trailing")
    assert_one_line_error(run("sample", "--model", tmp_path / "none.onnx", tmp_path / "o.png"), "not found")
    assert_one_line_error(run("sample", "--model", ckpt, "--backend", "tf", tmp_path / "o.png"), "backend")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    assert_one_line_error(run("sample", "--model", tmp_path / "foreign.onnx", tmp_path / "o.png"), "not a dsd export")
    assert_one_line_error(run("export", "--model", ckpt, tmp_path / "e.onnx"), "--onnx")
    assert_one_line_error(run("export", "--onnx", "--model", ckpt, tmp_path / "no" / "e.onnx"), "does not exist")
    assert_one_line_error(run("export", "--onnx", "--model", ckpt, tmp_path / "e.png"), ".onnx")
    assert not (tmp_path / "o.png").exists() and not list(tmp_path.glob("e.*"))
