"""`dsd export --onnx --sampler`: each solver unrolled into one graph, matching torch to 1e-4, its sampler in the
metadata read back by the onnxruntime sampler (and by `dsd sample`, without torch), and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from dsd_core.checkpoint import load_model
from dsd_core.classes import class_ids
from dsd_core.sampling import sample
from exporters.onnx_export import export_onnx
from exporters.runtime import OnnxSampler

from .onnx_fixtures import tiny_checkpoint
from .test_cli import assert_one_line_error, run
from .test_onnx_notorch import dsd_without_torch

STEPS = 5  # 3M reaches third order at step 3 of 5; UniPC's corrector acts from step 2


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A v-model exported with each solver through the CLI: {sampler: (checkpoint, onnx path, stdout)}."""
    folder = tmp_path_factory.mktemp("solvers")
    ckpt = tiny_checkpoint(folder / "v.safetensors", prediction="v", distilled_steps=None)
    out = {}
    for sampler in ("dpm++2m", "dpm++3m", "unipc"):
        path = folder / f"{sampler}.onnx"
        result = run("export", "--onnx", "--model", ckpt, "--steps", STEPS, "--sampler", sampler, "--threads", 1, path)
        assert result.exit_code == 0, result.output
        out[sampler] = (ckpt, path, result.stdout)
    return out


@pytest.mark.parametrize("sampler", ["dpm++2m", "dpm++3m", "unipc"])
def test_each_solver_exports_and_matches_torch(exports, sampler):
    ckpt, path, stdout = exports[sampler]
    diff = float(stdout.split("max abs diff")[1].split()[0])
    assert f"{STEPS}-step sampler (" in stdout and 0 <= diff <= 1e-4
    meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["dsd"])
    assert meta["sampler"] == sampler and meta["steps"] == STEPS
    runtime = OnnxSampler(path, threads=1)
    assert runtime.sampler == sampler
    got = runtime.sample(6, seed=3, batch=4)  # a partial last batch too
    expected = (sample(load_model(ckpt), STEPS, 6, seed=3, sampler=sampler).numpy() + 1) / 2
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    ddim = (sample(load_model(ckpt), STEPS, 6, seed=3).numpy() + 1) / 2
    assert np.abs(got - ddim).max() > 1e-3  # the graph really walks the solver


def test_a_conditional_solver_export_takes_guidance(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "c.safetensors", num_classes=3, distilled_steps=None)
    report = export_onnx(load_model(ckpt), tmp_path / "c.onnx", 4, sampler="unipc")
    assert report.max_abs_diff <= 1e-4
    runtime = OnnxSampler(report.path, threads=1)
    labels = class_ids("all", 5, 3)
    for w in (0.0, 3.0):
        expected = sample(load_model(ckpt), 4, 5, seed=1, classes=labels, guidance=w, sampler="unipc")
        np.testing.assert_allclose(runtime.sample(5, seed=1, class_labels=labels, guidance=w),
                                   (expected.numpy() + 1) / 2, atol=1e-4)


def test_dsd_sample_reads_the_sampler_back_without_torch(exports, tmp_path):
    ckpt, path, _ = exports["unipc"]
    done = dsd_without_torch("sample", "--model", path, "--num", 4, "--seed", 1, "--threads", 1, tmp_path / "o.npz")
    assert done.returncode == 0, done.stderr
    assert "torch modules: []" in done.stderr and f"{STEPS} steps of UniPC (bh2)," in " ".join(done.stdout.split())
    assert run("sample", "-m", ckpt, "-s", STEPS, "-n", 4, "--seed", 1, "--sampler", "unipc",
               tmp_path / "t.npz").exit_code == 0
    a, b = (np.load(tmp_path / f"{n}.npz")["arr_0"].astype(int) for n in "ot")
    assert np.abs(a - b).max() <= 1
    same = run("sample", "--model", path, "--sampler", "unipc", "-n", 2, tmp_path / "same.npz")
    assert same.exit_code == 0, same.output
    other = tmp_path / "other.npz"
    assert_one_line_error(run("sample", "--model", path, "--sampler", "ddim", other),
                          "samples with unipc, not ddim; export another with dsd export --onnx --sampler ddim")
    assert not other.exists()


def test_backend_ort_caches_one_export_per_sampler(tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("DSD_CACHE_DIR", str(tmp_path / "cache"))
    for sampler in ("ddim", "dpm++2m"):
        result = run("sample", "-m", tiny_ckpt, "-s", 3, "-n", 2, "--backend", "ort", "--sampler", sampler,
                     "--threads", 1, tmp_path / f"{sampler}.npz")
        assert result.exit_code == 0, result.output
    names = sorted(p.name.split("-", 1)[1] for p in (tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert names == ["3steps-dpm++2m.onnx", "3steps.onnx"]


def test_sampler_with_step_model_and_unknown_names_are_one_line_errors(tiny_ckpt, tmp_path):
    out = tmp_path / "s.onnx"
    assert_one_line_error(run("export", "--onnx", "--model", tiny_ckpt, "--step-model", "--sampler", "unipc", out),
                          "--step-model exports the denoiser alone, which has no sampler; drop --sampler")
    assert_one_line_error(run("export", "--onnx", "--model", tiny_ckpt, "--steps", 2, "--sampler", "heun", out),
                          "unknown sampler 'heun'")
    assert not out.exists()
