"""benchmarks/distill_cost_sizes.py: its memory terms and SD-1.5 projection against hand-computed numbers, and
its measurement path on a tiny UNet2DModel (the `--smoke` model) in-process."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import distill_cost_sizes as sizes  # noqa: E402

RESIDENT = {"weights": 400, "EMA": 400, "frozen teacher": 0, "optimizer": 800, "pool + data": 50}


def test_decompose_splits_the_peak_into_its_terms():
    terms = sizes.decompose(RESIDENT, update=5000, grad_bytes=400)
    assert terms == {"weights": 400, "Adam": 800, "EMA": 400, "teacher copy": 0, "gradients": 400,
                     "pool + data": 50, "activations": 4600, "peak": 6650}
    assert sum(terms[k] for k in sizes.TERMS) == terms["peak"]


def test_per_image_is_the_slope_between_the_two_largest_batches():
    assert sizes.per_image({1: 900, 8: 4400, 32: 16400}) == 500  # (16400 - 4400) / 24
    assert sizes.per_image({4: 2000}) == 500


def test_projection_by_hand():
    """100 parameters of 4 B measured at 32×32 → 1000 parameters at 64×64, batch 2: fp16 weights 2 B/param,
    fp32 master 4, Adam 8, fp16 gradients 2, EMA 4, fp16 teacher 2; activations 1000 B per image × 10 (params)
    × 4 (pixels) × ½ (fp16) × 2 images = 40000."""
    terms = sizes.decompose(RESIDENT, update=4400, grad_bytes=400)
    rows = sizes.project(terms, params=100, act_per_image=1000, side=32, to_batch=2, to_params=1000, to_side=64)
    assert rows == {"fp16 weights": 2000, "fp32 master weights": 4000, "Adam state": 8000, "gradients": 2000,
                    "EMA": 4000, "teacher copy": 0, "activations": 40000, "total": 60000}
    teacher = sizes.project(sizes.decompose({**RESIDENT, "frozen teacher": 400}, 4400, 400), 100, 1000, 32, 2,
                            1000, 64)
    assert teacher["teacher copy"] == 2000 and teacher["total"] == 62000


def test_measure_on_a_tiny_unet():
    """The smoke path: every variant timed and counted; per-parameter terms exact; both tables render."""
    params = sizes.parameter_count(sizes.SIZES["tiny"])
    with tempfile.TemporaryDirectory() as tmp:
        result = sizes.measure(sizes.SIZES["tiny"], [2], 1, 0, torch.device("cpu"), "off", tmp)
    for batch, r in result.items():
        t = r["terms"]
        for label, _, _ in sizes.VARIANTS:
            assert t[label]["weights"] == t[label]["gradients"] == t[label]["EMA"] == 4 * params
            assert t[label]["Adam"] >= 8 * params  # two moments (+ fused AdamW's step counters)
            assert t[label]["activations"] > 0 and r["time"]["median"][label] > 0
        assert t["dsd"]["teacher copy"] == 0 and t["pd"]["teacher copy"] == t["tsd"]["teacher copy"] == 4 * params
        assert r["time"]["nfe"]["dsd"] == 2 * batch and r["time"]["nfe"]["pd"] == 3 * batch
    assert sizes.size_table(result).count("\n| 2 |") == len(sizes.VARIANTS)
    table = sizes.projection_table("tiny", params, 32, result, 8, "cpu")
    assert "| **total GB** |" in table and "| memory × PD |" in table
