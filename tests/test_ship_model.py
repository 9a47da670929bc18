"""scripts/ship_model.py: a built-in stored as float16 loads into the float32 network and samples exactly as
that network with its weights rounded to float16 would; a distilled one names its built-in base."""

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

from dsd_core.checkpoint import load_model, load_tensors, save_model
from dsd_core.models.unet import UNet
from dsd_core.sampling import sample
from dsd_core.schedule import NoiseSchedule

from .conftest import TINY

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_model.py"


def _script():
    spec = importlib.util.spec_from_file_location("ship_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_half_copy_holds_float16_and_samples_as_the_rounded_weights(tiny_ckpt, tmp_path):
    out = _script().half_copy(tiny_ckpt, tmp_path / "half.safetensors")
    tensors, meta = load_tensors(out)
    original, original_meta = load_tensors(tiny_ckpt)
    assert meta == original_meta
    assert {v.dtype for v in tensors.values()} == {torch.float16}
    assert out.stat().st_size < 0.55 * Path(tiny_ckpt).stat().st_size

    half, full = load_model(out), load_model(tiny_ckpt)
    assert next(half.model.parameters()).dtype == torch.float32
    with torch.no_grad():
        for p in full.model.parameters():
            p.copy_(p.half().float())
    assert torch.equal(sample(half, 4, 3, seed=0), sample(full, 4, 3, seed=0))


def test_guidance_sets_the_scale_a_conditional_model_samples_with(tmp_path):
    torch.manual_seed(2)
    cond = save_model(tmp_path / "cond.safetensors", UNet(dataclasses.replace(TINY, num_classes=3)),
                      NoiseSchedule("linear"), "eps", ema=True)
    out = _script().half_copy(cond, tmp_path / "half.safetensors", guidance=2.0)
    assert load_model(out).guidance == 2.0 and load_model(cond).guidance is None


def test_base_names_the_builtin_a_distilled_model_came_from(tiny_ckpt, tmp_path):
    torch.manual_seed(3)
    distilled = save_model(tmp_path / "d.safetensors", UNet(TINY), NoiseSchedule("linear"), "v", ema=True,
                           provenance={"method": "dsd-stage", "base_model": "/home/me/runs/base/model.safetensors",
                                       "base_sha256": "ab12"})
    out = _script().half_copy(distilled, tmp_path / "half.safetensors", base="emoji16-cond")
    provenance = load_tensors(out)[1]["provenance"]
    assert provenance == {"method": "dsd-stage", "base_model": "emoji16-cond", "base_sha256": "ab12",
                          "base_weights": "float32"}
    with pytest.raises(SystemExit, match="not distilled from a base model"):
        _script().half_copy(tiny_ckpt, tmp_path / "half2.safetensors", base="digits")
