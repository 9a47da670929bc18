import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from dsd_core.checkpoint import load_model, load_tensors, optimizer_state, restore_optimizer, save_tensors
from dsd_core.errors import DsdError


def test_round_trip_is_bit_exact(tiny_ckpt, tiny_model):
    loaded = load_model(tiny_ckpt)
    for (k, a), (_, b) in zip(tiny_model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert loaded.prediction == "eps"
    assert loaded.schedule.name == "linear"
    assert loaded.meta["provenance"] == {"made_by": "test"}
    assert loaded.meta["ema"] is True and loaded.distilled_steps is None
    assert loaded.model.config == tiny_model.config


def test_optimizer_state_round_trip(tiny_model, tmp_path):
    opt = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    tiny_model(torch.randn(2, 1, 8, 8), torch.tensor([1, 2])).sum().backward()
    opt.step()
    tensors, meta = optimizer_state(opt)
    save_tensors(tmp_path / "o.safetensors", tensors, {"kind": "test", "optimizer": meta})
    tensors2, meta2 = load_tensors(tmp_path / "o.safetensors")
    opt2 = torch.optim.AdamW(tiny_model.parameters(), lr=5.0)
    restore_optimizer(opt2, tensors2, meta2["optimizer"])
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for idx in a["state"]:
        for key in a["state"][idx]:
            assert torch.equal(torch.as_tensor(a["state"][idx][key]), torch.as_tensor(b["state"][idx][key]))


def test_failed_write_leaves_old_file_and_no_temp(tiny_ckpt, tiny_model, monkeypatch):
    before = tiny_ckpt.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(DsdError, match="No space left"):
        save_tensors(tiny_ckpt, {"w": torch.zeros(3)}, {"kind": "model"})
    assert tiny_ckpt.read_bytes() == before
    assert sorted(p.name for p in tiny_ckpt.parent.iterdir()) == [tiny_ckpt.name]


def test_missing_checkpoint(tmp_path):
    with pytest.raises(DsdError, match="checkpoint not found"):
        load_model(tmp_path / "nope.safetensors")


def test_unknown_builtin_name():
    with pytest.raises(DsdError, match="unknown model 'cifar'"):
        load_model("cifar")


def test_truncated_checkpoint(tiny_ckpt):
    data = tiny_ckpt.read_bytes()
    tiny_ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(DsdError, match="not a readable safetensors file"):
        load_model(tiny_ckpt)


def test_garbage_and_pickle_files_are_refused_without_unpickling(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(DsdError, match="not a readable safetensors file"):
        load_model(junk)
    pkl = tmp_path / "model.pt"
    pkl.write_bytes(pickle.dumps({"boom": 1}))
    with pytest.raises(DsdError, match="not a readable safetensors file"):
        load_model(pkl)


def test_foreign_safetensors(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(DsdError, match="not a dsd checkpoint"):
        load_model(path)


def test_weights_that_do_not_fit_the_config(tiny_ckpt, tmp_path):
    tensors, meta = load_tensors(tiny_ckpt)
    meta["model_config"]["base_channels"] = 32
    meta["model_config"]["num_groups"] = 16
    save_tensors(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(DsdError, match="shape"):
        load_model(tmp_path / "bad.safetensors")


def test_other_format_version(tiny_ckpt, tmp_path):
    tensors, meta = load_tensors(tiny_ckpt)
    path = tmp_path / "v9.safetensors"
    save_file(tensors, str(path), metadata={"dsd": json.dumps({**meta, "format_version": 9})})
    with pytest.raises(DsdError, match="format 9"):
        load_model(path)
