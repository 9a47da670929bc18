"""The evaluation path: sample archives and folders read back exactly, the classifier features, the floor,
mode collapse caught by recall, FD's standard error against fresh draws, and `dsd eval` end to end."""

import json
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dsd_core.checkpoint import load_model
from dsd_core.classifier import accuracy, train_classifier
from dsd_core.data import load_digits
from dsd_core.errors import DsdError
from dsd_core.evaluate import digits_reference, evaluate, folder_reference, read_samples
from dsd_core.features import DigitsFeatures, InceptionFeatures, get_extractor
from dsd_core.images import to_uint8, write_samples
from dsd_core.metrics import fd, fd_standard_error
from dsd_core.nfe import NFECounter
from dsd_core.sampling import sample
from dsd_tui.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def feats():
    return DigitsFeatures()


@pytest.fixture(scope="module")
def ref():
    return digits_reference()


def test_shipped_classifier_accuracy_is_what_it_records(feats):
    x, y = load_digits("test")
    recorded = feats.meta["test_accuracy"]
    assert recorded >= 0.97
    assert accuracy(feats.model, x, y) == pytest.approx(recorded, abs=1e-9)


def test_classifier_training_runs_and_learns():
    _, acc = train_classifier(epochs=2, seed=1)
    assert 0.5 < acc <= 1.0


def test_sample_archive_and_folder_read_back_exactly(tmp_path):
    result = runner.invoke(app, ["sample", "-m", "digits", "--steps", "2", "--num", "12", str(tmp_path / "s.npz")])
    assert result.exit_code == 0, result.output
    runner.invoke(app, ["sample", "-m", "digits", "--steps", "2", "--num", "12", str(tmp_path / "folder")])
    direct = to_uint8(sample(load_model("digits"), 2, 12, seed=0))
    from_npz, from_folder = read_samples(tmp_path / "s.npz"), read_samples(tmp_path / "folder")
    assert from_npz.dtype == np.uint8 and from_npz.shape == (12, 8, 8, 1)
    np.testing.assert_array_equal(from_npz, direct)
    np.testing.assert_array_equal(from_folder, from_npz)


def test_fd_standard_error_is_the_spread_of_fresh_draws():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(2000, 8))

    def draw(n):
        return rng.normal(size=(n, 8)) * 1.2 + 0.3

    fresh = [fd(real, draw(200)) for _ in range(40)]  # what the standard error should predict
    errors = [fd_standard_error(real, draw(200)) for _ in range(10)]
    assert 0.65 < np.mean(errors) / np.std(fresh, ddof=1) < 1.5
    four_times = np.mean([fd_standard_error(real, draw(800)) for _ in range(10)])
    assert 1.6 < np.mean(errors) / four_times < 2.5  # ∝ 1/√n
    x = draw(50)
    assert fd_standard_error(real, x) == fd_standard_error(real, x)  # the groups are seeded
    with pytest.raises(DsdError, match="at least 3 samples"):
        fd_standard_error(real, x[:2])


def test_folder_and_npz_evaluate_identically(tmp_path, ref, feats):
    images = to_uint8(load_digits("test")[0])[:60]
    write_samples(images, tmp_path / "s.npz")
    write_samples(images, tmp_path / "imgs")
    with pytest.warns(UserWarning, match="60 samples are too few"):
        a = evaluate(read_samples(tmp_path / "s.npz"), ref, feats)
    b = evaluate(read_samples(tmp_path / "imgs"), ref, feats, warn=False)
    assert a == b


def test_real_held_out_digits_score_like_the_floor(ref, feats):
    result = evaluate(ref.held_out, ref, feats)
    floor = result["floor"]
    assert result["fd"] == pytest.approx(floor["fd"]) and result["recall"] == pytest.approx(floor["recall"])
    assert floor["precision"] > 0.85 and floor["recall"] > 0.85
    assert sum(result["class_counts"]) == len(ref.held_out)


def test_mode_collapse_has_no_recall(ref, feats):
    collapsed = np.repeat(ref.held_out[:1], 300, axis=0)
    result = evaluate(collapsed, ref, feats)
    assert result["recall"] <= 0.05
    assert result["fd"] > 10 * result["floor"]["fd"]
    assert max(result["class_counts"]) == 300


def test_noised_samples_score_worse(ref, feats):
    rng = np.random.default_rng(0)
    clean = ref.held_out.astype(float)
    fds = []
    for scale in (0, 40, 80):
        noisy = np.clip(clean + rng.normal(0, scale, clean.shape), 0, 255).astype(np.uint8)
        fds.append(evaluate(noisy, ref, feats)["fd"])
    assert fds[0] < fds[1] < fds[2]


def test_nfe_is_counted_not_assumed():
    counter = NFECounter()
    sample(load_model("digits"), 3, num=5, seed=0, batch=2, counter=counter)
    assert counter.evaluations == 15 and counter.per_sample(5) == 3


def test_bad_sample_files(tmp_path, ref, feats):
    np.savez(tmp_path / "f.npz", arr_0=np.zeros((12, 8, 8, 1), np.float32))
    with pytest.raises(DsdError, match="uint8"):
        read_samples(tmp_path / "f.npz")
    np.savez(tmp_path / "k.npz", images=np.zeros((12, 8, 8, 1), np.uint8))
    with pytest.raises(DsdError, match="no arr_0"):
        read_samples(tmp_path / "k.npz")
    (tmp_path / "c.npz").write_bytes(b"garbage")
    with pytest.raises(DsdError, match="not a readable"):
        read_samples(tmp_path / "c.npz")
    with pytest.raises(DsdError, match="not found"):
        read_samples(tmp_path / "missing.npz")
    with pytest.raises(DsdError, match="reference"):
        evaluate(np.zeros((20, 16, 16, 1), np.uint8), ref, feats)
    with pytest.raises(DsdError, match="at least 10"):
        evaluate(ref.held_out[:5], ref, feats)


def test_folder_reference_splits_in_halves(tmp_path):
    images = np.arange(20 * 4, dtype=np.uint8).reshape(20, 2, 2, 1)
    write_samples(images, tmp_path / "real.npz")
    r = folder_reference(tmp_path / "real.npz")
    assert len(r.images) == 10 and len(r.held_out) == 10
    both = np.concatenate([r.images, r.held_out]).reshape(20, -1)[:, 0]
    assert sorted(both.tolist()) == images.reshape(20, -1)[:, 0].tolist()


def test_inception_errors_say_what_to_do(tmp_path):
    with pytest.raises(DsdError, match="needs inception PATH.*https://"):
        get_extractor("inception")
    with pytest.raises(DsdError, match="not found.*download"):
        InceptionFeatures(tmp_path / "missing.pth")

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DsdError, match="weights-only"):
        InceptionFeatures(evil)


def test_inception_adapter_feeds_torch_fidelity(tmp_path, monkeypatch):
    """With torch-fidelity absent here (it needs torchvision), a stand-in checks the wiring: the weights path
    handed over, uint8 NCHW RGB batches in, the 2048-d output collected."""
    seen = {}

    class FakeInception(torch.nn.Module):
        def __init__(self, name, features_list, feature_extractor_weights_path=None):
            super().__init__()
            seen.update(name=name, features=features_list, path=feature_extractor_weights_path, shapes=[])

        def forward(self, x):
            assert x.dtype == torch.uint8
            seen["shapes"].append(tuple(x.shape))
            return (x.float().mean(dim=(2, 3)).repeat(1, 683)[:, :2048],)

    module = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    module.FeatureExtractorInceptionV3 = FakeInception
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", module)
    weights = tmp_path / "w.pth"
    torch.save({"w": torch.zeros(2)}, weights)
    extractor = InceptionFeatures(weights, batch=4)
    out = extractor(np.full((6, 8, 8, 1), 7, np.uint8))
    assert seen["path"] == str(weights) and seen["features"] == ["2048"]
    assert seen["shapes"] == [(4, 3, 8, 8), (2, 3, 8, 8)]
    assert out.shape == (6, 2048) and np.all(out == 7)


def test_eval_cli_json(tmp_path):
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["eval", "--model", "digits", "--steps", "2", "--num", "40", "--json", str(out)])
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    assert r["n"] == 40 and r["steps"] == 2 and r["nfe"] == 2
    for key in ("fd", "precision", "recall", "density", "coverage"):
        assert key in r and key in r["floor"]
    assert "real floor" in result.stdout


def test_eval_cli_needs_one_source(tmp_path):
    result = runner.invoke(app, ["eval"])
    assert result.exit_code == 2 and "either SAMPLES" in result.stderr
    result = runner.invoke(app, ["eval", str(tmp_path / "x.npz"), "--model", "digits"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["eval", "--model", "digits", "--features", "inception"])
    assert result.exit_code == 2 and "--inception PATH" in result.stderr


def test_eval_across_seeds_is_the_spread_of_single_seed_runs(tmp_path):
    def fd_json(*extra):
        out = tmp_path / "r.json"
        result = runner.invoke(app, ["eval", "--model", "digits", "--steps", "2", "--num", "30", "--json", str(out),
                                     "--force", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text()), result.stdout

    single = [fd_json("--seed", str(s))[0]["fd"] for s in (3, 4, 5)]
    r, stdout = fd_json("--seed", "3", "--seeds", "3")
    spread = r["across_seeds"]["fd"]
    assert spread["values"] == pytest.approx(single)
    assert spread["mean"] == pytest.approx(np.mean(single)) and spread["sd"] == pytest.approx(np.std(single, ddof=1))
    assert r["fd"] == pytest.approx(single[0]) and r["nfe"] == 2 and r["seeds"] == 3
    assert "over 3 noise seeds (3…5)" in stdout.replace("\n", " ")
