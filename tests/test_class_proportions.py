"""`--class data`: class ids in the proportions of the reference's labels, exact in their counts (largest
remainders), interleaved so that every prefix is in proportion too, the same each time; through `dsd eval`, the
class mix recorded, and one-line errors where there are no labels, no classes or other classes."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import dsd_tui.cli.evaluate as cli_eval
from dsd_core.checkpoint import save_model
from dsd_core.classes import class_ids, proportional_counts, proportional_ids
from dsd_core.errors import DsdError, OptionError
from dsd_core.evaluate import Reference, digits_reference
from dsd_core.images import write_samples
from dsd_core.schedule import NoiseSchedule
from dsd_tui.cli import app

from .conftest import tiny_unet
from .test_cli import assert_one_line_error

runner = CliRunner()
EMOJI16_TRAIN = [306, 4116, 10, 288, 236, 394, 154, 476, 404, 486]  # the shipped emoji16 train split's labels


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_prefixes_in_proportion(ids: np.ndarray, counts: list[int]) -> None:
    """Every prefix of length n holds each class k within (strictly) 1 of n·c_k/C, in exact integers."""
    c, total = np.array(counts, dtype=np.int64), sum(counts)
    held = np.cumsum(np.eye(len(counts), dtype=np.int64)[ids], axis=0)  # (n, K): ids of each class so far
    n = np.arange(1, len(ids) + 1, dtype=np.int64)[:, None]
    assert (np.abs(held * total - n * c) < total).all()


@pytest.mark.parametrize("counts, num, expected", [
    ([4522, 10, 1000, 300, 168], 1000, [754, 2, 166, 50, 28]),  # three remainders of 2/3 tie: ids 0 and 1 win
    (EMOJI16_TRAIN, 1000, [45, 599, 2, 42, 34, 57, 22, 69, 59, 71]),  # 0.92, 0.81, 0.74, 0.54, 0.46 round up
    (EMOJI16_TRAIN, 297, [13, 178, 0, 12, 10, 17, 7, 21, 18, 21]),
    ([3, 0, 5, 2], 10, [3, 0, 5, 2]),  # counts that sum to num: those counts
    ([5, 1, 1, 1, 1, 1], 3, [2, 1, 0, 0, 0, 0]),  # fewer images than classes
    ([1, 1, 1, 1], 2, [1, 1, 0, 0]),
    ([2, 7], 0, [0, 0]),
])
def test_counts_are_floors_plus_the_largest_remainders(counts, num, expected):
    got = proportional_counts(counts, num)
    assert got.tolist() == expected and got.sum() == num
    assert (np.abs(got * sum(counts) - num * np.array(counts)) < sum(counts)).all()  # each within 1 of num·c/C
    ids = proportional_ids(counts, num)
    assert ids.dtype == np.int64 and np.bincount(ids, minlength=len(counts)).tolist() == expected


def test_small_cases_in_order():
    assert proportional_ids([5, 1, 1, 1, 1, 1], 3).tolist() == [0, 1, 0]
    assert proportional_ids([1, 1, 1, 1], 2).tolist() == [0, 1]
    assert proportional_ids([3, 1], 8).tolist() == [0, 0, 0, 1, 0, 0, 0, 1]  # 1 waits to its deadline
    assert proportional_ids([1, 1, 1], 7).tolist() == [0, 1, 2, 0, 1, 2, 0]  # equal counts: "all"'s cycle


@pytest.mark.parametrize("counts, num", [
    (EMOJI16_TRAIN, 1000), (EMOJI16_TRAIN, 297), (EMOJI16_TRAIN, 10),
    ([4522, 10, 1000, 300, 168], 1000), ([157, 149, 150, 152, 156, 149, 153, 145, 139, 150], 1000),
    ([1, 0, 999], 500), ([7, 5, 3, 2, 1, 1], 10_000),
])
def test_every_prefix_is_in_proportion(counts, num):
    ids = proportional_ids(counts, num)
    assert_prefixes_in_proportion(ids, counts)
    assert np.bincount(ids, minlength=len(counts)).tolist() == proportional_counts(counts, num).tolist()


def test_every_prefix_is_in_proportion_for_all_small_cases():
    for counts in itertools.product(range(5), repeat=3):
        if sum(counts):
            for num in range(1, 3 * sum(counts) + 2):
                assert_prefixes_in_proportion(proportional_ids(list(counts), num), list(counts))
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = rng.integers(0, rng.choice([3, 40, 2000]), rng.integers(2, 9)).tolist()
        if sum(counts):
            assert_prefixes_in_proportion(proportional_ids(counts, int(rng.integers(1, 150))), counts)


def test_stratified_not_sorted_and_the_same_each_time():
    ids = proportional_ids(EMOJI16_TRAIN, 1000)
    assert (np.diff(ids) < 0).any() and len(set(ids[:20].tolist())) == 7  # all with 20·c/C ≥ 0.7 appear
    assert np.array_equal(ids, proportional_ids(EMOJI16_TRAIN, 1000))
    assert np.array_equal(ids, proportional_ids(np.array(EMOJI16_TRAIN), 1000))
    for spec in ("data", "Data", " DATA "):
        assert np.array_equal(class_ids(spec, 1000, 10, counts=EMOJI16_TRAIN), ids)


def test_class_ids_data_errors():
    with pytest.raises(OptionError, match="class data needs the labels of a reference set"):
        class_ids("data", 5, 3)
    with pytest.raises(OptionError, match="labels are of 2 classes but this model has 3"):
        class_ids("data", 5, 3, counts=[1, 2])
    with pytest.raises(OptionError, match="class-conditional model"):
        class_ids("data", 5, None, counts=[1, 2])
    for bad in ([0, 0], [3, -1], [1.5, 2], []):
        with pytest.raises(DsdError, match="class counts must be whole numbers"):
            proportional_ids(bad, 4)


@pytest.fixture
def cond3(tmp_path):
    """A tiny 3-class 8×8 grey model (the digits' image shape)."""
    return save_model(tmp_path / "c3.safetensors", tiny_unet(num_classes=3), NoiseSchedule("linear"), "eps",
                      ema=True, provenance={"data": "digits:train"})


def test_eval_class_data_errors(cond3, tmp_path):
    write_samples(digits_reference().held_out[:16], tmp_path / "real.npz")
    eval_model = ("eval", "--model", cond3, "--steps", 1, "--num", 10, "--threads", 1, "--class", "data")
    assert_one_line_error(run(*eval_model, "--reference", tmp_path / "real.npz"),
                          "--class data needs labelled reference images and")
    assert_one_line_error(run(*eval_model), "--class data: the reference digits has 10 classes but this model has 3")
    uncond = save_model(tmp_path / "u.safetensors", tiny_unet(), NoiseSchedule("linear"), "eps", ema=True)
    assert_one_line_error(run("eval", "--model", uncond, "--steps", 1, "--num", 10, "--class", "data"),
                          "--class needs a class-conditional model")


def test_eval_class_data_samples_the_reference_mix(cond3, tmp_path, monkeypatch):
    digits = digits_reference()
    tiny = Reference("tiny-labelled", digits.images[:40], digits.held_out[:20], np.array([6, 1, 3]))
    monkeypatch.setattr(cli_eval, "get_reference", lambda spec: tiny)
    asked, real_sampler = [], cli_eval.sample_batches

    def sample_batches(*args, classes=None, **kwargs):
        asked.append(classes)
        return real_sampler(*args, classes=classes, **kwargs)

    monkeypatch.setattr(cli_eval, "sample_batches", sample_batches)
    out = tmp_path / "r.json"
    result = run("eval", "--model", cond3, "--steps", 1, "--num", 10, "--threads", 1, "--class", "data", "--json", out)
    assert result.exit_code == 0, result.output
    assert "classes in the proportions of tiny-labelled's labels: 0: 6, 1: 1, 2: 3" in result.stdout
    r = json.loads(out.read_text())
    assert r["classes"] == "data" and r["class_mix"] == [6, 1, 3] and r["reference"] == "tiny-labelled"
    assert asked[0].tolist() == proportional_ids([6, 1, 3], 10).tolist() == [0, 0, 2, 0, 2, 0, 0, 1, 0, 2]
    assert set(r["class_accuracy"]["per_class"]) == {"0", "1", "2"}
