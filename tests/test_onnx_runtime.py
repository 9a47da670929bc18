"""`OnnxSampler`: the same images as the torch sampler for the same seed, CPU fallback when CUDA does not
load (and no noise about it), its session options, and one-line errors for files that are not ours."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from dsd_core.checkpoint import load_model
from dsd_core.errors import DsdError
from dsd_core.sampling import sample
from exporters.runtime import CPU, OnnxSampler

from .onnx_fixtures import STEPS, tiny_export


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ort")
    ckpt, report = tiny_export(folder)
    _, step = tiny_export(folder, step_model=True)
    _, conditional = tiny_export(folder, name="cond", num_classes=2)
    return ckpt, report.path, step.path, conditional.path


def test_same_seed_same_images_as_torch(exported):
    ckpt, path, _, _ = exported
    sampler = OnnxSampler(path, threads=1, provider="cpu")
    assert (sampler.steps, sampler.image_shape, sampler.num_classes, sampler.provider) == (STEPS, (1, 8, 8), 0, CPU)
    images = sampler.sample(10, seed=3, batch=4)  # batches of 4, 4 and a padded 2
    expected = (sample(load_model(ckpt), STEPS, 10, seed=3).numpy() + 1) / 2
    assert images.dtype == np.float32 and images.shape == (10, 1, 8, 8)
    np.testing.assert_allclose(images, expected, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(sampler.sample(10, seed=3, batch=10), images)
    assert np.abs(sampler.sample(10, seed=4) - images).max() > 0.1


def test_cuda_request_falls_back_to_cpu_quietly(exported, monkeypatch, capfd):
    if torch.cuda.is_available():
        pytest.skip("a real GPU: CUDA may load here")
    # onnxruntime-gpu lists CUDA on machines where it cannot load; make the plain build claim it too
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", CPU])
    sampler = OnnxSampler(exported[1], threads=1, provider="cuda")
    assert sampler.provider == CPU and sampler.session(1).get_providers() == [CPU]
    assert sampler.sample(2, seed=0).shape == (2, 1, 8, 8)
    err = capfd.readouterr().err
    assert "CUDA" not in err and "onnxruntime" not in err


def test_session_options(exported):
    sampler = OnnxSampler(exported[1], threads=1)
    options = sampler.session(3).get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(DsdError, match="threads must be at least 1"):
        OnnxSampler(exported[1], threads=0)


def test_class_labels(exported):
    *_, conditional = exported
    sampler = OnnxSampler(conditional, threads=1)
    assert sampler.num_classes == 2
    null = sampler.sample(3, seed=1)
    np.testing.assert_array_equal(sampler.sample(3, seed=1, class_labels=2), null)  # 2 is the null class
    assert np.abs(sampler.sample(3, seed=1, class_labels=[0, 1, 0]) - null).max() > 1e-3
    with pytest.raises(DsdError, match=r"lie in \[0, 2\]"):
        sampler.sample(3, seed=1, class_labels=3)
    with pytest.raises(DsdError, match="unconditional"):
        OnnxSampler(exported[1], threads=1).sample(2, class_labels=1)


def test_files_that_are_not_samplers(exported, tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(tmp_path / "other.onnx"))
    (tmp_path / "garbage.onnx").write_bytes(b"not a protobuf at all")
    cases = [(tmp_path / "other.onnx", "not a dsd export"), (tmp_path / "garbage.onnx", "not a readable ONNX"),
             (tmp_path / "missing.onnx", "not found"), (exported[2], "denoiser alone")]
    for path, needle in cases:
        with pytest.raises(DsdError, match=needle) as info:
            OnnxSampler(path, threads=1)
        assert "\n" not in str(info.value)
