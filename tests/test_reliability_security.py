"""Security basics: nothing is unpickled, evaluated or run from a file; metadata (checkpoint, ONNX, run config)
is data, and paths in it never make dsd write outside the folders the user named."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from dsd_core import __version__
from dsd_core.distill.config import DistillConfig
from dsd_core.errors import DsdError
from dsd_tui.tui.export_job import onnx_path
from exporters import metadata as md
from exporters.runtime import OnnxSampler

from .reliability_helpers import assert_one_line_error, dsd, listing

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("dsd_core", "dsd_tui", "exporters", "benchmarks", "scripts") for p in (ROOT / d).rglob("*.py")]
FORBIDDEN = {
    "pickle": re.compile(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b|\bpickle\.loads?\(", re.M),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"),
    "eval/exec": re.compile(r"(?<![.\w])(eval|exec)\("),
    "a shell": re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\("),
    "yaml.load": re.compile(r"yaml\.load\("),
}
HOSTILE = "__import__('os').system('touch PWNED')"


def test_the_sources_unpickle_evaluate_and_shell_out_nothing():
    assert len(SOURCES) > 40
    found = [f"{p.relative_to(ROOT)}: {why}" for p in SOURCES for why, rx in FORBIDDEN.items()
             if rx.search(p.read_text())]
    assert found == []


def test_the_scan_would_catch_them():
    assert FORBIDDEN["pickle"].search("import pickle") and FORBIDDEN["eval/exec"].search("x = eval(s)")
    assert FORBIDDEN["torch.load without weights_only=True"].search("torch.load(f, map_location='cpu')")
    assert not FORBIDDEN["torch.load without weights_only=True"].search("torch.load(f, weights_only=True)")
    assert not FORBIDDEN["eval/exec"].search("model.eval()") and not FORBIDDEN["eval/exec"].search("evaluate(x)")


def hostile_onnx(path: Path, **meta) -> Path:
    graph = helper.make_graph([helper.make_node("Identity", ["noise"], ["images"])], "g",
                              [helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["batch", 1, 8, 8])],
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 1, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    fields = {"format": md.FORMAT, "format_version": md.FORMAT_VERSION, "kind": "sampler", "inputs": ["noise"],
              "steps": 2, "image_shape": [1, 8, 8], "num_classes": 0, "spacing": "trailing", "clip_x0": True, **meta}
    helper.set_model_props(model, {md.META_KEY: json.dumps(fields)})
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("field", ["steps", "image_shape", "num_classes"])
def test_onnx_metadata_is_data(field, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = hostile_onnx(tmp_path / "m.onnx", **{field: HOSTILE})
    with pytest.raises(DsdError, match="invalid dsd metadata") as info:
        OnnxSampler(path, threads=1)
    assert "\n" not in str(info.value)
    assert_one_line_error(dsd("sample", "--model", path, "--num", 1, tmp_path / "o.png"), "invalid dsd metadata")
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "o.png").exists()


def test_paths_in_a_run_config_are_only_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    config = {"command": "distill", "version": __version__, "base_model": f"../outside/x.safetensors; {HOSTILE}",
              "distill": asdict(DistillConfig(updates=2, batch=2, data="../../etc"))}
    (run / "config.json").write_text(json.dumps(config))
    before = listing(tmp_path)
    assert_one_line_error(dsd("distill", "--resume", run), "not found")
    after = listing(tmp_path)
    assert set(after) - set(before) <= {"run/checkpoints", "run/samples"} and not (tmp_path / "PWNED").exists()
    assert not (tmp_path.parent / "outside").exists()


def test_an_export_named_by_a_hostile_model_path_stays_in_its_folder(tmp_path):
    for model in ("../../../etc/passwd", "/abs/../../x.safetensors", "..", "a/../../b"):
        path = onnx_path(tmp_path / "onnx", Path(model), 2)
        assert path.parent == tmp_path / "onnx", path
