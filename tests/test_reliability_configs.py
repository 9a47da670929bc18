"""Configs read from files are checked like flags (issue 18, "clean errors"): sizes in a checkpoint's metadata,
a diffusers folder's config.json and scheduler config, seeds and batches, and a run's config.json when it is
resumed. Each bad value is one line naming the file and the field, exit 2, before anything is allocated, and a
run whose settings fail a check leaves no run folder behind."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from dsd_core import __version__, limits
from dsd_core.checkpoint import load_model, load_tensors
from dsd_core.distill.config import DistillConfig
from dsd_core.errors import DsdError
from dsd_core.train import TrainConfig

from .conftest import TINY
from .reliability_helpers import assert_one_line_error, dsd, listing
from .test_reliability_memory import with_meta

DISTILL = ["--schedule", "iterative", "--from", 8, "--to", 2, "--updates", 4, "--batch", 4, "--ema", 0.5,
           "--threads", 1]
TRAIN = ["--steps", 2, "--batch", 4, "--channels", 16, "--mults", "1,2", "--attention", "", "--threads", 1]

# -- sizes and fields of a dsd checkpoint's metadata ------------------------------------------------------------

BAD_META = [  # (key as `with_meta` takes it, value, what the error says)
    ("model_config__image_size", 0, "image_size is 0; it must be at least 1"),
    ("model_config__image_size", 8.5, "image_size must be a whole number, got '8.5'"),
    ("model_config__in_channels", -1, "in_channels is -1; it must be at least 1"),
    ("model_config__base_channels", 0, "base_channels is 0; it must be at least 1"),
    ("model_config__num_groups", 0, "num_groups is 0; it must be at least 1"),
    ("model_config__num_res_blocks", -2, "num_res_blocks is -2; it must be at least 0"),
    ("model_config__channel_mults", [0, 1], "layer width (channels) of the model config is 0"),
    ("model_config__num_classes", 0, "num_classes is 0; it must be at least 1"),
    ("model_config__dropout", "lots", "dropout must be a number, got 'lots'"),
    ("schedule__num_timesteps", 0, "num_timesteps is 0; it must be at least 1"),
    ("schedule__beta_end", 7.0, "beta_start and beta_end must be numbers in (0, 1)"),
    ("distilled_steps", 10**9, "distilled_steps is 1000000000, above dsd's limit of 100000"),
    ("guidance", "strong", "guidance must be a finite number ≥ 0, got 'strong'"),
    ("provenance", ["a", "list"], "provenance must be a JSON object, not a JSON list"),
    ("model_config", [8, 1], "no schedule or model_config object"),
]


@pytest.mark.parametrize("key, value, needle", BAD_META, ids=[f"{k}={v!r}" for k, v, _ in BAD_META])
def test_a_checkpoint_with_impossible_fields_is_one_line(key, value, needle, tiny_ckpt, tmp_path):
    bad = with_meta(tiny_ckpt, tmp_path / "bad.safetensors", **{key: value})
    with pytest.raises(DsdError, match="bad.safetensors: .*" + needle.replace("(", r"\(").replace(")", r"\)")):
        load_model(bad)
    before = listing(tmp_path)
    assert_one_line_error(dsd("sample", "--model", bad, "--steps", 1, tmp_path / "o.png"), "bad.safetensors", needle)
    assert listing(tmp_path) == before


def test_checkpoint_metadata_that_is_a_json_list(tiny_ckpt, tmp_path):
    bad = tmp_path / "list.safetensors"
    save_file(load_tensors(tiny_ckpt)[0], str(bad), metadata={"dsd": "[1, 2]"})  # as no dsd ever wrote it
    before = listing(tmp_path)
    assert_one_line_error(dsd("info", bad), "list.safetensors", "a JSON list, not an object")
    assert_one_line_error(dsd("sample", "--model", bad, "--steps", 1, tmp_path / "o.png"), "a JSON list")
    assert listing(tmp_path) == before


# -- a diffusers folder: config.json and scheduler_config.json -------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A tiny DDPMPipeline folder (1×8×8, two resolutions)."""
    diffusers = pytest.importorskip("diffusers")
    folder = tmp_path_factory.mktemp("diffusers") / "pipe"
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(str(folder))
    return folder


def edited(pipeline, dst, file, changes):
    """A copy of the pipeline folder whose `file` (a JSON object) says otherwise; `changes=None`: a JSON list."""
    shutil.copytree(pipeline, dst)
    config = json.loads((dst / file).read_text())
    (dst / file).write_text(json.dumps([config] if changes is None else {**config, **changes}))
    return dst


UNET = "unet/config.json"
SCHEDULER = "scheduler/scheduler_config.json"
BAD_DIFFUSERS = {
    "sample-size-huge": (UNET, {"sample_size": 100_000}, "sample_size is 100000, above dsd's limit of 1024"),
    "sample-size-zero": (UNET, {"sample_size": 0}, "sample_size is 0; it must be at least 1"),
    "widths-huge": (UNET, {"block_out_channels": [100_000, 32]}, "(a layer width) is 100000, above dsd's limit"),
    "widths-none": (UNET, {"block_out_channels": []}, "block_out_channels must list 1 to 8 resolutions"),
    "layers-zero": (UNET, {"layers_per_block": 0}, "layers_per_block is 0; it must be at least 1"),
    "groups-negative": (UNET, {"norm_num_groups": -8}, "norm_num_groups is -8; it must be at least 1"),
    "classes-huge": (UNET, {"num_class_embeds": 10**12}, "num_class_embeds is 1000000000000, above dsd's limit"),
    "channels-text": (UNET, {"in_channels": "one"}, "in_channels must be a whole number, got 'one'"),
    "timesteps-huge": (SCHEDULER, {"num_train_timesteps": 10**9},
                       "num_train_timesteps is 1000000000, above dsd's limit of 100000"),
    "timesteps-zero": (SCHEDULER, {"num_train_timesteps": 0}, "num_train_timesteps is 0; it must be at least 1"),
    "timesteps-text": (SCHEDULER, {"num_train_timesteps": "many"}, "num_train_timesteps must be a whole number"),
    "betas-text": (SCHEDULER, {"beta_start": "small"}, "beta_start and beta_end must be numbers in (0, 1)"),
    "scheduler-list": (SCHEDULER, None, "must hold a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD_DIFFUSERS))
def test_a_diffusers_folder_with_impossible_sizes_is_one_line_and_never_built(case, pipeline, tmp_path,
                                                                               monkeypatch):
    import diffusers

    file, changes, needle = BAD_DIFFUSERS[case]
    folder = edited(pipeline, tmp_path / "m", file, changes)
    monkeypatch.setattr(diffusers.UNet2DModel, "from_pretrained", lambda *a, **k: pytest.fail("the UNet was built"))
    with pytest.raises(DsdError, match=str(folder / file).replace(".", r"\.")):
        load_model(folder)
    before = listing(tmp_path)
    assert_one_line_error(dsd("sample", "--model", folder, "--steps", 1, tmp_path / "o.png"), file, needle)
    assert listing(tmp_path) == before


def test_a_diffusers_config_claiming_more_weights_than_its_file_is_never_built(pipeline, tmp_path, monkeypatch):
    """Within every limit, yet 4.4 G weights (17 GB) if diffusers built it: counted on the meta device first."""
    import diffusers

    folder = edited(pipeline, tmp_path / "m", UNET, {"block_out_channels": [4096, 4096]})
    monkeypatch.setattr(diffusers.UNet2DModel, "from_pretrained", lambda *a, **k: pytest.fail("the UNet was built"))
    with pytest.raises(DsdError, match=r"config.json describes a UNet of 4,396,060,673 weights but its weights file "
                                       r"holds 163,985; not loaded"):
        load_model(folder)


def test_a_diffusers_dsd_json_with_impossible_fields_is_one_line(pipeline, tmp_path):
    for info, needle in (({"distilled_steps": -4}, "distilled_steps is -4"),
                         ({"provenance": [1]}, "provenance must be a JSON object, not a JSON list")):
        folder = tmp_path / f"m{len(needle)}"
        shutil.copytree(pipeline, folder)
        (folder / "dsd.json").write_text(json.dumps(info))
        with pytest.raises(DsdError, match=f"dsd.json: {needle}"):
            load_model(folder)


# -- seeds and batches ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [2**70, -1])
@pytest.mark.parametrize("command", ["distill", "train", "sample", "eval"])
def test_seeds_outside_what_the_generators_take_are_one_line(command, seed, tiny_ckpt, tmp_path):
    args = {"distill": ["distill", "--model", tiny_ckpt, *DISTILL, "--run-dir", tmp_path / "r"],
            "train": ["train", "--data", "digits", *TRAIN, "--out", tmp_path / "r"],
            "sample": ["sample", "--model", tiny_ckpt, "--steps", 1, tmp_path / "o.png"],
            "eval": ["eval", "--model", tiny_ckpt, "--steps", 1, "--num", 16]}[command]
    before = listing(tmp_path)
    assert_one_line_error(dsd(*args, "--seed", seed), f"--seed must be a whole number from 0 to {2**64 - 1}",
                          f"got {seed}")
    assert listing(tmp_path) == before and not (tmp_path / "r").exists()


def test_a_seed_range_past_the_largest_seed_is_one_line(tiny_ckpt):
    assert_one_line_error(dsd("eval", "--model", tiny_ckpt, "--seed", 2**64 - 2, "--seeds", 3),
                          "--seeds 3 from --seed 18446744073709551614 run past the largest seed")


BATCHES = [
    (["train", "--batch", 10**8], "--batch is 100000000, above dsd's limit of 65536 images per batch"),
    (["train", "--sd-batch", 10**8], "--sd-batch is 100000000, above dsd's limit of 65536"),
    (["train", "--batch", 5], "--batch 5 of images of 64 values each holds more noise"),  # MAX_BATCH_VALUES 256
    (["train", "--self-distill", "--sd-batch", 5], "--sd-batch 5 of images of 64 values"),
    (["distill", "--batch", 10**8], "--batch is 100000000, above dsd's limit of 65536 images per batch"),
    (["distill", "--batch", 5], "--batch 5 of images of 64 values each holds more noise"),
    (["distill", "--quality-num", 5], "--quality-num 5 of images of 64 values"),
    (["distill", "--method", "dsd-anchor", "--anchor-cache", 5, "--quality-num", 4],
     "--anchor-cache 5 of images of 64 values"),
]


@pytest.mark.parametrize("args, needle", BATCHES, ids=[" ".join(map(str, a)) for a, _ in BATCHES])
def test_batches_above_their_limits_are_one_line(args, needle, tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_BATCH_VALUES", 4 * 64)  # 4 digits a batch
    command, *rest = args
    full = (["distill", "--model", tiny_ckpt, *DISTILL, *rest, "--run-dir", tmp_path / "r"] if command == "distill"
            else ["train", "--data", "digits", *TRAIN, *rest, "--out", tmp_path / "r"])
    before = listing(tmp_path)
    assert_one_line_error(dsd(*full), needle, "dsd_core/limits.py")
    assert listing(tmp_path) == before and not (tmp_path / "r").exists()


NETWORK_FLAGS = [
    (["--channels", 10**7], "--channels is 10000000, above dsd's limit of 8192 channels per layer"),
    (["--channels", 0], "--channels must be at least 1, got 0"),
    (["--res-blocks", -1], "--res-blocks must be at least 0, got -1"),
    (["--mults", "1,0"], "a layer width of the UNet config (base_channels × channel_mults) is 0"),
    (["--mults", "1,2,2,2,2,2,2,2,2"], "must list 1 to 8 resolutions"),
]


@pytest.mark.parametrize("args, needle", NETWORK_FLAGS, ids=[" ".join(map(str, a)) for a, _ in NETWORK_FLAGS])
def test_network_flags_of_train_are_held_to_the_same_limits(args, needle, tmp_path):
    assert_one_line_error(dsd("train", "--data", "digits", *TRAIN, *args, "--out", tmp_path / "r"), needle)
    assert listing(tmp_path) == {}


# -- a run's config.json, when the run is resumed ---------------------------------------------------------------


def run_config(command, tiny_ckpt):
    """What a new run of `command` writes to config.json (the sections `--resume` reads)."""
    if command == "distill":
        return {"command": "distill", "version": __version__, "threads": 1, "base_model": str(tiny_ckpt),
                "distill": dataclasses.asdict(DistillConfig())}
    return {"command": "train", "version": __version__, "threads": 1, "data_spec": "digits",
            "model_config": TINY.to_dict(), "train": dataclasses.asdict(TrainConfig())}


def changed(config, key, value):
    """`config` with `key` (`a.b` for a nested key) set to `value`, or removed when value is `...`."""
    *path, last = key.split(".")
    target = config
    for part in path:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return config


BAD_RUN_CONFIGS = [
    ("distill", "distill.updates", "many", "distill.updates must be a whole number, got 'many'"),
    ("distill", "distill.lr", None, "distill.lr must be a number, got 'None'"),
    ("distill", "distill.lockstep", 1, "distill.lockstep must be true or false"),
    ("distill", "distill.colour", "blue", "unknown distill.colour"),
    ("distill", "distill", [1, 2], "distill must be a JSON object, not a JSON list"),
    ("distill", "distill.updates", 0, "distill.updates must be at least 1, got 0"),
    ("distill", "distill.seed", 2**70, "distill.seed must be a whole number from 0"),
    ("distill", "distill.batch", 10**8, "distill.batch is 100000000, above dsd's limit of 65536"),
    ("distill", "distill.lr", float("inf"), "distill.lr must be a finite number above 0, got inf"),
    ("distill", "base_model", 3, "base_model must be a JSON string, not a JSON number"),
    ("distill", "threads", "two", "threads must be a whole number ≥ 1 or null, got 'two'"),
    ("train", "train.steps", "many", "train.steps must be a whole number, got 'many'"),
    ("train", "train.batch", 10**8, "train.batch is 100000000, above dsd's limit of 65536"),
    ("train", "train.seed", -1, "train.seed must be a whole number from 0"),
    ("train", "train.schedule", "square", "unknown noise schedule 'square'"),
    ("train", "train.sample_steps", 5000, "train.sample_steps is 5000, more than the schedule's 1000 timesteps"),
    ("train", "model_config.image_size", 100_000, "image_size is 100000, above dsd's limit of 1024"),
    ("train", "model_config.base_channels", 0, "base_channels is 0; it must be at least 1"),
    ("train", "model_config.channel_mults", "12", "channel_mults must be a list of whole numbers"),
    ("train", "model_config.depth", 3, "unknown UNet config keys: depth"),
    ("train", "model_config", [], "model_config must be a JSON object, not a JSON list"),
    ("train", "data_spec", None, "data_spec must be a JSON string, not null"),
]


@pytest.mark.parametrize("command, key, value, needle", BAD_RUN_CONFIGS,
                         ids=[f"{c}-{k}-{v!r}"[:40] for c, k, v, _ in BAD_RUN_CONFIGS])
def test_a_run_config_with_wrong_types_or_keys_is_one_line(command, key, value, needle, tiny_ckpt, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(changed(run_config(command, tiny_ckpt), key, value)))
    before = listing(tmp_path)
    assert_one_line_error(dsd(command, "--resume", run), "config.json", needle)
    assert listing(tmp_path) == before


def test_a_field_an_older_dsd_did_not_write_takes_its_default():
    from dataclasses import asdict

    from dsd_core.checks import config_from_file
    from dsd_core.distill.config import DistillConfig

    older = {k: v for k, v in asdict(DistillConfig(updates=10)).items() if k != "lr_decay"}
    assert config_from_file(DistillConfig, older, "RUN/config.json", "distill") == DistillConfig(updates=10)


def test_a_run_config_that_is_a_json_list_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    for command in ("distill", "train"):
        assert_one_line_error(dsd(command, "--resume", tmp_path), "config.json is corrupt: it holds a JSON list")
    assert listing(tmp_path) == {"config.json": b"[1, 2]"}


# -- no run folder from a run that fails a check ----------------------------------------------------------------

NO_FOLDER = {
    "distill-seed": ["distill", "--seed", 2**70],
    "distill-batch": ["distill", "--batch", 10**8],
    "distill-stages": ["distill", "--updates", 1],
    "distill-from": ["distill", "--from", 2048],
    "distill-quality-fd": ["distill", "--quality-fd", 100],  # checked by the run itself, after its RunDir
    "distill-pd-data": ["distill", "--method", "pd"],
    "distill-guidance": ["distill", "--guidance", 3],
    "train-seed": ["train", "--seed", -1],
    "train-batch": ["train", "--batch", 10**8],
    "train-mults": ["train", "--mults", "1,0"],
    "train-sd-steps": ["train", "--self-distill", "--sd-steps", 600],  # checked by the Trainer
    "train-schedule": ["train", "--schedule", "square"],
}


@pytest.mark.parametrize("case", sorted(NO_FOLDER))
@pytest.mark.parametrize("where", ["default", "given"])
def test_a_run_that_fails_a_check_leaves_no_run_folder(case, where, tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command, *rest = NO_FOLDER[case]
    folder = [] if where == "default" else ["--run-dir" if command == "distill" else "--out", tmp_path / "r"]
    if command == "train" and where == "default":
        folder = ["--out", tmp_path / "runs" / "r"]  # train has no default folder: one inside runs/
    args = (["distill", "--model", tiny_ckpt, *DISTILL] if command == "distill" else ["train", "--data", "digits",
                                                                                        *TRAIN])
    before = listing(tmp_path)
    assert_one_line_error(dsd(*args, *rest, *folder))
    assert listing(tmp_path) == before
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r").exists()


def test_a_run_that_passes_its_checks_makes_its_folder_when_it_starts(tiny_ckpt, tmp_path):
    result = dsd("distill", "--model", tiny_ckpt, *DISTILL, "--run-dir", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "r").iterdir()} >= {"config.json", "events.jsonl", "checkpoints", "samples"}
