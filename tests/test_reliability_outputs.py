"""No result silently wrong (docs/reliability.md, rows 56–64): broken weights are refused at load, every sampled
batch is checked (shape, finite, range) before it is written, deep or float images are scaled by their depth or
refused, a folder output is replaced whole, a swapped ONNX cache file is never used as the model, and result files
are not overwritten without --force."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from dsd_core import atomic
from dsd_core.checkpoint import load_model, load_tensors, save_tensors
from dsd_core.data import read_image_folder
from dsd_core.errors import DsdError
from exporters import metadata as md
from exporters.runtime import OnnxSampler

from .onnx_fixtures import tiny_checkpoint
from .reliability_helpers import assert_one_line_error, dsd, listing
from .test_reliability_cli import FullDisk


def with_weights(src, dst, change):
    """A copy of checkpoint `src` with `change(tensors)` applied to its weights."""
    tensors, meta = load_tensors(src)
    change(tensors)
    return save_tensors(dst, tensors, meta)


def nan_weight(t):
    t["model.out_conv.weight"][0, 0, 0, 0] = float("nan")


def int8_weight(t):
    t["model.out_conv.weight"] = t["model.out_conv.weight"].to(torch.int8)


def huge_weights(t):
    t["model.out_conv.weight"].fill_(3e38)  # finite, but the model diverges: NaN images


@pytest.mark.parametrize("change, needle", [
    (nan_weight, "out_conv.weight holds NaN or infinite values"),
    (int8_weight, "out_conv.weight holds int8 values, the model needs float32"),
])
def test_broken_weights_are_refused_at_load(change, needle, tiny_ckpt, tmp_path):
    bad = with_weights(tiny_ckpt, tmp_path / "bad.safetensors", change)
    with pytest.raises(DsdError, match=needle):
        load_model(bad)
    before = listing(tmp_path)
    for args in (["sample", "--model", bad, "--steps", 1, tmp_path / "o.png"], ["info", bad],
                 ["export", "--onnx", "--model", bad, "--steps", 1, tmp_path / "m.onnx"]):
        assert_one_line_error(dsd(*args), needle)
    assert listing(tmp_path) == before


@pytest.mark.parametrize("out", ["o.png", "o.npz", "folder"])
def test_a_model_that_samples_nan_writes_nothing(out, tiny_ckpt, tmp_path):
    bad = with_weights(tiny_ckpt, tmp_path / "bad.safetensors", huge_weights)
    (tmp_path / "o.png").write_bytes(b"old")
    (tmp_path / "o.npz").write_bytes(b"old")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "00000.png").write_bytes(b"old")
    before = listing(tmp_path)
    assert_one_line_error(dsd("sample", "--model", bad, "--steps", 2, "--num", 5, "--batch", 2, "--force",
                              tmp_path / out), "non-finite values (NaN or inf) for images", "nothing written")
    assert listing(tmp_path) == before


def sampler_onnx(path, nodes, out_shape, in_shape=("batch", 1, 8, 8), **meta):
    """A dsd sampler file (metadata for [1, 8, 8] images in [0, 1]) whose graph is `nodes`: noise → images."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("noise", TensorProto.FLOAT, list(in_shape))],
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, out_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    fields = {"format": md.FORMAT, "format_version": md.FORMAT_VERSION, "kind": "sampler", "inputs": ["noise"],
              "steps": 2, "image_shape": [1, 8, 8], "num_classes": 0, "spacing": "trailing", "clip_x0": True,
              "output_range": [0, 1], **meta}
    helper.set_model_props(model, {md.META_KEY: json.dumps(fields)})
    onnx.save(model, str(path))
    return path


SYMBOLIC = ("batch", 1, 8, "w")  # a width the graph does not fix, so its output's is known only when it runs
GRAPHS = {
    "wrong shape": ([helper.make_node("Concat", ["noise", "noise"], ["images"], axis=3)], ["batch", 1, 8, "w2"],
                    SYMBOLIC, "returned images of shape (2, 1, 8, 16), not the (2, 1, 8, 8) its metadata promises"),
    "declared shape": ([helper.make_node("Concat", ["noise", "noise"], ["images"], axis=3)], ["batch", 1, 8, 16],
                       ("batch", 1, 8, 8), "its graph's images is [2, 1, 8, 16] but its metadata says images of "
                                           "[1, 8, 8]"),
    "NaN": ([helper.make_node("Sqrt", ["noise"], ["images"])], ["batch", 1, 8, 8], ("batch", 1, 8, 8),
            "returned non-finite values (NaN or inf) for images 0…1 of seed 0"),
    "out of range": ([helper.make_node("Identity", ["noise"], ["images"])], ["batch", 1, 8, 8], ("batch", 1, 8, 8),
                     "outside the [0, 1] its metadata promises"),
}


@pytest.mark.parametrize("case", sorted(GRAPHS))
def test_an_onnx_graph_whose_output_breaks_its_metadata_writes_nothing(case, tmp_path):
    nodes, out_shape, in_shape, needle = GRAPHS[case]
    path = sampler_onnx(tmp_path / "m.onnx", nodes, out_shape, in_shape)
    with pytest.raises(DsdError, match=re.escape(needle)):
        OnnxSampler(path, threads=1, batch=2).sample(2, batch=2)
    before = listing(tmp_path)
    assert_one_line_error(dsd("sample", "--model", path, "--num", 2, tmp_path / "o.npz"), needle)
    assert listing(tmp_path) == before


def test_deep_and_float_images_are_scaled_by_their_depth_or_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(data / "a16.png")  # half of 65535 (I;16)
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(data / "b-float.tif")
    Image.fromarray(np.full((8, 8), 0.25 * 65535, np.float32).astype(np.uint16)).save(data / "c16.tif")
    Image.fromarray(np.full((8, 8), 2.5, np.float32)).save(data / "d-float-out-of-range.tif")
    Image.fromarray(np.full((8, 8), 7, np.int32)).save(data / "e-int32.tif")
    with pytest.warns(UserWarning) as said:
        images = read_image_folder(data)
    assert images.shape == (3, 8, 8, 1)
    assert [int(np.unique(i)[0]) for i in images] == [128, 128, 64]  # not 255: read by depth, not clipped
    messages = [str(w.message) for w in said]
    assert any("d-float-out-of-range.tif: float pixels outside [0, 1]" in m for m in messages)
    assert any("e-int32.tif: 32-bit integer pixels, of no known range" in m for m in messages)


def test_force_into_a_folder_leaves_no_stale_images(tiny_ckpt, tmp_path):
    out = tmp_path / "samples"
    assert dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 6, out).exit_code == 0
    result = dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 3, "--seed", 1, "--force", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples", "tiny.safetensors"]  # no temp folder


def test_a_full_disk_leaves_the_old_folder_and_no_half_folder(tiny_ckpt, tmp_path, monkeypatch):
    out = tmp_path / "samples"
    assert dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 4, out).exit_code == 0
    before = listing(tmp_path)
    monkeypatch.setattr(atomic, "os", FullDisk())
    assert_one_line_error(dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 6, "--force", out),
                          f"cannot write {out}: No space left on device")
    assert_one_line_error(dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 6, tmp_path / "new"),
                          "No space left on device")
    assert listing(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["samples", "tiny.safetensors"]


def test_a_swapped_or_torn_ort_cache_file_is_exported_again(tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("DSD_CACHE_DIR", str(tmp_path / "cache"))
    other = tiny_checkpoint(tmp_path / "other.safetensors", num_classes=None, prediction="v")

    def ort_sample(model, out):
        result = dsd("sample", "--backend", "ort", "--model", model, "--steps", 2, "--num", 4, "--threads", 1,
                     "--force", out)
        assert result.exit_code == 0, result.output
        return result.stderr, np.load(out)["arr_0"]

    _, expected = ort_sample(tiny_ckpt, tmp_path / "a.npz")
    (ours,) = (tmp_path / "cache" / "onnx").iterdir()
    ort_sample(other, tmp_path / "b.npz")
    theirs = next(p for p in (tmp_path / "cache" / "onnx").iterdir() if p != ours)
    ours.write_bytes(theirs.read_bytes())  # the other model's export under our name
    said, images = ort_sample(tiny_ckpt, tmp_path / "a.npz")
    assert "is not this model's (it is the export of another checkpoint" in said
    np.testing.assert_array_equal(images, expected)
    ours.write_bytes(ours.read_bytes()[:1000])  # torn by a kill or a full disk
    said, images = ort_sample(tiny_ckpt, tmp_path / "a.npz")
    assert "not a readable ONNX file" in said
    np.testing.assert_array_equal(images, expected)


def test_result_files_are_not_overwritten_without_force(tmp_path):
    result_file, classifier = tmp_path / "r.json", tmp_path / "c.safetensors"
    result_file.write_text("precious")
    classifier.write_text("precious")
    before = listing(tmp_path)
    assert_one_line_error(dsd("eval", "--model", "digits", "--steps", 1, "--num", 10, "--json", result_file),
                          "r.json already exists; pass --force")
    assert_one_line_error(dsd("train-classifier", "--out", classifier), "c.safetensors already exists; pass --force")
    assert listing(tmp_path) == before
    result = dsd("eval", "--model", "digits", "--steps", 1, "--num", 10, "--json", result_file, "--force")
    assert result.exit_code == 0, result.output
    assert json.loads(result_file.read_text())["n"] == 10
