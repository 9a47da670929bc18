"""`export_onnx`: parity with torch, the unrolled sampler equal to N calls of the exported denoiser,
metadata, a dynamic batch axis, and nothing written when validation or the target fails."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dsd_core import __version__
from dsd_core.checkpoint import file_sha256, load_model
from dsd_core.ddim import ddim_sample
from dsd_core.errors import DsdError
from dsd_core.noise import initial_noise
from dsd_core.sampling import sample
from dsd_core.timesteps import step_pairs
from exporters import onnx_export
from exporters.onnx_export import export_onnx

from .onnx_fixtures import STEPS, tiny_checkpoint, tiny_export


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    ckpt, sampler = tiny_export(folder)
    _, step = tiny_export(folder, step_model=True)
    return ckpt, sampler, step


def session(path, batch_override=None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if batch_override:
        options.add_free_dimension_override_by_name("batch", batch_override)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_sampler_export_matches_torch_sampling(exported):
    ckpt, report, _ = exported
    assert report.kind == "sampler" and report.steps == STEPS and report.opset == 17
    assert 0 <= report.max_abs_diff <= 1e-4
    # a batch size other than the traced one, through the symbolic batch axis (no override)
    noise = initial_noise(5, 7, (1, 8, 8))
    got = session(report.path).run(None, {"noise": noise})[0]
    expected = (sample(load_model(ckpt), STEPS, 7, seed=5).numpy() + 1) / 2
    assert got.shape == (7, 1, 8, 8)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert 0.0 <= got.min() and got.max() <= 1.0 and got.std() > 0.05


def test_unrolled_graph_equals_n_calls_of_the_step_model(exported):
    ckpt, sampler, step = exported
    denoiser = session(step.path)
    loaded = load_model(ckpt)

    def onnx_denoiser(x, t):
        return torch.from_numpy(denoiser.run(None, {"x": x.numpy(), "t": t.numpy()})[0])

    noise = initial_noise(2, 3, (1, 8, 8))
    walked = ddim_sample(onnx_denoiser, torch.from_numpy(noise), step_pairs(STEPS), loaded.schedule, "eps", True)
    unrolled = session(sampler.path).run(None, {"noise": noise})[0]
    np.testing.assert_allclose(unrolled, (walked.clamp(-1, 1).numpy() + 1) / 2, atol=1e-5, rtol=0)


def test_step_model_matches_the_torch_denoiser(exported):
    ckpt, _, step = exported
    assert step.kind == "step" and step.max_abs_diff <= 1e-4
    x, t = initial_noise(3, 4, (1, 8, 8)), np.array([999, 500, 20, 0], dtype=np.int64)
    got = session(step.path).run(["prediction"], {"x": x, "t": t})[0]
    with torch.no_grad():
        expected = load_model(ckpt).model(torch.from_numpy(x), torch.from_numpy(t)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_metadata_round_trip(exported):
    ckpt, report, step = exported
    proto = onnx.load(str(report.path))
    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props["dsd"])
    loaded = load_model(ckpt)
    assert meta["kind"] == "sampler" and meta["steps"] == STEPS
    assert meta["timesteps"] == [list(p) for p in step_pairs(STEPS)]
    assert meta["model_config"] == loaded.model.config.to_dict()
    assert meta["schedule"] == {"name": "linear", "num_timesteps": 1000}
    assert meta["prediction"] == "eps" and meta["image_shape"] == [1, 8, 8] and meta["num_classes"] == 0
    assert meta["source_sha256"] == file_sha256(ckpt) and meta["package_version"] == __version__
    assert [i.name for i in proto.graph.input] == meta["inputs"] == ["noise"]
    assert [o.name for o in proto.graph.output] == meta["outputs"] == ["images"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    # onnxruntime reads the same props (what the torch-free runtime relies on)
    assert json.loads(session(report.path).get_modelmeta().custom_metadata_map["dsd"]) == meta
    step_meta = json.loads({p.key: p.value for p in onnx.load(str(step.path)).metadata_props}["dsd"])
    assert step_meta["kind"] == "step" and step_meta["inputs"] == ["x", "t"] and step_meta["outputs"] == ["prediction"]


def test_conditional_model_takes_a_class_input(tmp_path):
    ckpt, report = tiny_export(tmp_path, num_classes=3, prediction="v")
    meta = json.loads(session(report.path).get_modelmeta().custom_metadata_map["dsd"])
    assert meta["inputs"] == ["noise", "class", "guidance"] and meta["num_classes"] == 3
    noise, labels = initial_noise(0, 4, (1, 8, 8)), np.array([0, 1, 2, 3], dtype=np.int64)
    ones = np.ones(4, dtype=np.float32)  # w = 1: the plain conditional prediction
    got = session(report.path, 4).run(None, {"noise": noise, "class": labels, "guidance": ones})[0]
    loaded = load_model(ckpt)

    def denoiser(x, t):
        return loaded.model(x, t, torch.from_numpy(labels))

    with torch.no_grad():
        expected = ddim_sample(denoiser, torch.from_numpy(noise), step_pairs(STEPS), loaded.schedule, "v", True)
    np.testing.assert_allclose(got, (expected.clamp(-1, 1).numpy() + 1) / 2, atol=1e-4, rtol=0)
    other = session(report.path, 4).run(None, {"noise": noise, "class": labels[::-1].copy(), "guidance": ones})[0]
    assert np.abs(other - got).max() > 1e-3  # the class input reaches the output


def test_parity_failure_writes_nothing(tmp_path, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    monkeypatch.setattr(onnx_export, "_parity", lambda *a: 3e-4)
    with pytest.raises(DsdError, match="differs from torch by 3.00e-04"):
        export_onnx(load_model(ckpt), tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


@pytest.mark.parametrize("target, needle", [("m.txt", "must end in .onnx"), ("missing/m.onnx", "does not exist"),
                                            ("m.safetensors/m.onnx", "is a file"), ("ro/m.onnx", "permission denied")])
def test_bad_targets(tmp_path, target, needle):
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    (tmp_path / "ro").mkdir(mode=0o500)
    if needle == "permission denied" and os.access(tmp_path / "ro", os.W_OK):
        pytest.skip("running as root: the folder stays writable")
    with pytest.raises(DsdError, match=needle):
        export_onnx(load_model(ckpt), tmp_path / target)
    assert not (tmp_path / target).exists()


def test_undistilled_model_needs_a_step_count(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors", distilled_steps=None)
    with pytest.raises(DsdError, match=r"\(steps N\)"):
        export_onnx(load_model(ckpt), tmp_path / "m.onnx")
    assert export_onnx(load_model(ckpt), tmp_path / "m.onnx", steps=2).steps == 2
