"""onnxruntime without the provider asked for: one line, nothing written (no silent fallback when --device
names one; `auto` falls back to the CPU quietly, test_onnx_runtime.py)."""

from __future__ import annotations

import onnxruntime as ort

from exporters.runtime import CPU

from .reliability_helpers import assert_one_line_error, dsd, listing
from .test_reliability_security import hostile_onnx


def test_a_missing_provider_is_one_line(tmp_path, monkeypatch):
    model = hostile_onnx(tmp_path / "m.onnx")  # a valid dsd sampler file (an identity graph)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    before = listing(tmp_path)
    assert_one_line_error(dsd("sample", "--model", model, "--device", "cuda", "--num", 2, tmp_path / "o.png"),
                          "could not load its CUDA provider")
    assert_one_line_error(dsd("sample", "--model", model, "--device", "cuda:1", "--num", 2, tmp_path / "o.png"),
                          "not available to onnxruntime")
    assert listing(tmp_path) == before
    result = dsd("sample", "--model", model, "--device", "cpu", "--num", 2, tmp_path / "o.png")
    assert result.exit_code == 0, result.output
