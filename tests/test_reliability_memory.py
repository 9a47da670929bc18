"""Memory bounded whatever a file or a flag says (docs/reliability.md, rows 47–55): every size is checked against
`dsd_core/limits.py` before anything is allocated, and sampling holds one batch of noise, never all of `--num`,
while drawing exactly the noise (and so the images) it drew when it drew everything up front."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile

import numpy as np
import onnx
import pytest
import torch
from numpy.lib import format as npy_format
from onnx import TensorProto, helper
from PIL import Image

from dsd_core import limits
from dsd_core.checkpoint import load_model, load_tensors, save_tensors
from dsd_core.data import UnusableImage, read_image, read_image_folder
from dsd_core.errors import DsdError, OptionError
from dsd_core.evaluate import read_samples
from dsd_core.guidance import bind, null_class
from dsd_core.noise import NoiseStream, initial_noise
from dsd_core.sampling import sample
from dsd_core.solvers import solver_sample
from dsd_core.timesteps import step_pairs
from exporters import metadata as md
from exporters.runtime import OnnxSampler

from .onnx_fixtures import tiny_checkpoint, tiny_export
from .reliability_helpers import assert_one_line_error, dsd, listing
from .test_reliability_security import hostile_onnx

# sha256 prefixes of `initial_noise` as it was before noise was drawn per batch (numpy's PCG64 is the same on
# every platform), so a change of the stream fails here even if old and new code changed together
BEFORE = {(0, 5, (1, 8, 8)): "9354ac2cdc45d5b6", (7, 9, (3, 4, 4)): "f679f735e0e613e3",
          (2**40 + 3, 3, (1, 8, 8)): "b089e9ac0beda1e9"}


def upfront_noise(seed, num, shape):
    """The noise exactly as dsd drew it before: all `num` images in one draw."""
    return np.random.Generator(np.random.PCG64(seed)).standard_normal((num, *shape)).astype(np.float32)


def upfront_sample(loaded, steps, num, seed, batch, classes=None, guidance=1.0, sampler="ddim"):
    """`sampling.sample` as it was before: all noise drawn first, then sliced into batches."""
    cfg = loaded.model.config
    noise = torch.from_numpy(upfront_noise(seed, num, (cfg.in_channels, cfg.image_size, cfg.image_size)))
    pairs = step_pairs(steps, loaded.schedule.num_timesteps, "trailing")
    out = []
    with torch.no_grad():
        for start in range(0, num, batch):
            labels = None if classes is None else torch.as_tensor(classes[start : start + batch]).long()
            x = solver_sample(sampler, bind(loaded.model, labels, guidance, null_class(loaded.model)),
                              noise[start : start + batch], pairs, loaded.schedule, loaded.prediction, True)
            out.append(x.clamp(-1, 1))
    return torch.cat(out)


@pytest.mark.parametrize("args", sorted(BEFORE))
def test_the_noise_stream_is_the_up_front_draw_bit_for_bit(args):
    seed, num, shape = args
    assert hashlib.sha256(initial_noise(*args).tobytes()).hexdigest()[:16] == BEFORE[args]
    for sizes in ([num], [1] * num, [2, num - 2], [num - 1, 1]):
        stream = NoiseStream(seed, shape)
        np.testing.assert_array_equal(np.concatenate([stream.draw(n) for n in sizes]), upfront_noise(*args))


@pytest.mark.parametrize("sampler", ["ddim", "dpm++2m"])
def test_sampled_images_are_the_same_as_before_bit_for_bit(sampler, tmp_path):
    loaded = load_model(tiny_checkpoint(tmp_path / "c.safetensors", num_classes=3))
    classes = np.array([0, 1, 2, 3, 0])
    for batch in (1, 2, 5):
        new = sample(loaded, 3, 5, 11, batch, classes=classes, guidance=1.5, sampler=sampler)
        assert torch.equal(new, upfront_sample(loaded, 3, 5, 11, batch, classes, 1.5, sampler))


def test_onnx_images_are_the_same_as_before_bit_for_bit(tmp_path):
    _, report = tiny_export(tmp_path)
    sampler = OnnxSampler(report.path, threads=1, provider="cpu", batch=2)
    noise, session = upfront_noise(5, 5, (1, 8, 8)), sampler.session(2)
    padded = np.concatenate([noise, noise[4:5]])  # the last batch of one, padded as the sampler pads it
    before = np.concatenate([session.run([md.IMAGES], {md.NOISE: padded[i : i + 2]})[0] for i in (0, 2, 4)])[:5]
    np.testing.assert_array_equal(sampler.sample(5, seed=5, batch=2), before)


def test_sampling_draws_one_batch_of_noise_at_a_time(tiny_ckpt, tmp_path, monkeypatch):
    draws = []
    real = NoiseStream.draw
    monkeypatch.setattr(NoiseStream, "draw", lambda self, n: draws.append(n) or real(self, n))
    assert dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 10, "--batch", 3,
               tmp_path / "o.npz").exit_code == 0
    assert draws == [3, 3, 3, 1]
    assert np.load(tmp_path / "o.npz")["arr_0"].shape == (10, 8, 8, 1)


def with_meta(src, dst, **changes):
    """A copy of checkpoint `src` whose metadata says otherwise: `schedule__num_timesteps=…` sets a nested key."""
    tensors, meta = load_tensors(src)
    for key, value in changes.items():
        *path, last = key.split("__")
        target = meta
        for part in path:
            target = target[part]
        target[last] = value
    return save_tensors(dst, tensors, meta)


CLAIMS = {
    "schedule__num_timesteps": (10**9, "num_timesteps is 1000000000, above dsd's limit of 100000"),
    "model_config__image_size": (100_000, "image_size is 100000, above dsd's limit of 1024"),
    "model_config__in_channels": (10**6, "in_channels is 1000000, above dsd's limit of 16"),
    "model_config__base_channels": (10**7, "base_channels is 10000000, above dsd's limit of 8192"),
    "model_config__channel_mults": ([1] * 1000, "1 to 8 resolutions"),
    "model_config__num_res_blocks": (10**9, "num_res_blocks is 1000000000, above dsd's limit of 16"),
    "model_config__num_classes": (10**12, "num_classes is 1000000000000, above dsd's limit of 100000"),
}


@pytest.mark.parametrize("key", sorted(CLAIMS))
def test_a_checkpoint_claiming_huge_sizes_is_one_line(key, tiny_ckpt, tmp_path):
    value, needle = CLAIMS[key]
    bad = with_meta(tiny_ckpt, tmp_path / "bad.safetensors", **{key: value})
    with pytest.raises(DsdError, match=needle.replace("(", r"\(")):
        load_model(bad)
    before = listing(tmp_path)
    assert_one_line_error(dsd("sample", "--model", bad, "--steps", 1, tmp_path / "o.png"), needle)
    assert_one_line_error(dsd("export", "--onnx", "--model", bad, "--steps", 1, tmp_path / "m.onnx"), needle)
    assert listing(tmp_path) == before


def test_a_config_claiming_more_than_its_weights_is_never_built(tiny_ckpt, tmp_path):
    """Within every limit, yet ~10 GB of weights if built for real: built on the meta device, it is refused
    by the weights the file really holds, at once."""
    bad = with_meta(tiny_ckpt, tmp_path / "bad.safetensors", model_config__base_channels=4096)
    start = time.perf_counter()
    with pytest.raises(DsdError, match="has shape .* the config expects"):
        load_model(bad)
    assert time.perf_counter() - start < 10


def npz_claiming(path, shape, body=b"\0" * 64):
    """An .npz of a few bytes whose arr_0 header claims `shape` (uint8)."""
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("arr_0.npy", header.getvalue() + body)
    return path


def test_an_npz_header_claiming_a_huge_array_is_refused_before_loading(tmp_path, monkeypatch):
    bomb = npz_claiming(tmp_path / "bomb.npz", (10**6, 1024, 1024, 3))
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load was reached"))
    with pytest.raises(DsdError, match=r"would take 2.86 TiB in memory, above dsd's limit of 2 GiB"):
        read_samples(bomb)
    monkeypatch.undo()
    assert_one_line_error(dsd("eval", bomb), "bomb.npz", "above dsd's limit of 2 GiB")


def test_a_compressed_npz_that_unpacks_above_the_limit(tmp_path, monkeypatch):
    """The 3 MB file of 3 GiB, scaled down: 8 MiB of zeros compressed to a few KB, with a 1 MiB limit."""
    path = tmp_path / "z.npz"
    np.savez_compressed(path, arr_0=np.zeros((128, 256, 256, 1), np.uint8))
    assert path.stat().st_size < 100_000
    monkeypatch.setattr(limits, "MAX_HELD_BYTES", 2**20)
    with pytest.raises(DsdError, match=r"\(128, 256, 256, 1\) would take 8 MiB in memory, above dsd's limit of 1 MiB"):
        read_samples(path)


@pytest.mark.parametrize("meta, needle", [
    ({"image_shape": [1, 30000, 30000]}, "image height is 30000, above dsd's limit of 1024"),
    ({"image_shape": [100000, 8, 8]}, "channels is 100000, above dsd's limit of 16"),
    ({"steps": 10**9}, "steps is 1000000000, above dsd's limit of 100000"),
    ({"num_classes": 10**10}, "num_classes is 10000000000, above dsd's limit of 100000"),
    ({"steps": 1e400}, "invalid dsd metadata"),
])
def test_onnx_metadata_claiming_huge_sizes_is_one_line(meta, needle, tmp_path):
    path = hostile_onnx(tmp_path / "m.onnx", **meta)
    with pytest.raises(DsdError, match=needle):
        OnnxSampler(path, threads=1)
    assert_one_line_error(dsd("sample", "--model", path, "--num", 1, tmp_path / "o.png"), needle)
    assert not (tmp_path / "o.png").exists()


def test_an_onnx_graph_declaring_other_images_than_its_metadata_is_refused(tmp_path):
    graph = helper.make_graph([helper.make_node("Identity", ["noise"], ["images"])], "g",
                              [helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["batch", 1, 512, 512])],
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 1, 512, 512])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = hostile_onnx(tmp_path / "ok.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}  # says [1, 8, 8]
    helper.set_model_props(model, meta)
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert_one_line_error(dsd("sample", "--model", tmp_path / "m.onnx", "--num", 1, tmp_path / "o.png"),
                          ", 1, 512, 512] but its metadata says images of [1, 8, 8]")


@pytest.mark.parametrize("args, needle", [
    (["--num", 10**8], "--num is 100000000, above dsd's limit of 10000000 images"),
    (["--batch", 10**8], "--batch is 100000000, above dsd's limit of 65536 images per batch"),
    (["--num", 5000], "--num is 5000, above dsd's limit of 4096 images in a .png grid"),
])
def test_count_flags_above_their_limits_are_one_line(args, needle, tiny_ckpt, tmp_path):
    before = listing(tmp_path)
    assert_one_line_error(dsd("sample", "--model", tiny_ckpt, "--steps", 1, *args, tmp_path / "o.png"), needle)
    assert listing(tmp_path) == before


def test_eval_flags_above_their_limits_are_one_line(tmp_path, monkeypatch):
    assert_one_line_error(dsd("eval", "--model", "digits", "--num", 10**8), "--num is 100000000, above")
    assert_one_line_error(dsd("eval", "--model", "digits", "--batch", 10**8), "--batch is 100000000, above")
    monkeypatch.setattr(limits, "MAX_HELD_BYTES", 64 * 1000)  # 1000 digits of 64 bytes
    assert_one_line_error(dsd("eval", "--model", "digits", "--num", 600, "--seeds", 2),
                          "--num 1200 images of 64 bytes are 75 KiB held for scoring",
                          "use at most 1000")


def test_a_batch_too_big_for_its_images_is_one_line(tiny_ckpt, tmp_path, monkeypatch):
    """--batch × C × H × W noise values: the bound that matters for big images, checked before sampling."""
    monkeypatch.setattr(limits, "MAX_BATCH_VALUES", 64 * 100)
    assert_one_line_error(dsd("sample", "--model", tiny_ckpt, "--steps", 1, "--num", 200, "--batch", 101,
                              tmp_path / "o.npz"), "--batch 101 of images of 64 values", "use at most 100")
    assert not (tmp_path / "o.npz").exists()


def grey_pngs(folder, n=12, size=8):
    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.full((size, size), 20 * i, np.uint8), "L").save(folder / f"{i:02d}.png")
    return folder


def test_images_above_the_pixel_limit_are_skipped_in_folders_and_refused_alone(tmp_path, monkeypatch):
    folder = grey_pngs(tmp_path / "data")
    Image.new("L", (100, 100)).save(folder / "big.png")  # a 100-pixel limit makes it an 11000×11000 PNG
    monkeypatch.setattr("dsd_core.data.MAX_FILE_PIXELS", 100)
    with pytest.warns(UserWarning, match=r"skipping image .*big.png: 100×100 pixels, above dsd's limit of 100"):
        images = read_image_folder(folder)
    assert images.shape == (12, 8, 8, 1)  # not resized up to the big one
    with pytest.raises(UnusableImage, match="above dsd's limit"):
        read_image(folder / "big.png")
    result = dsd("eval", folder)
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if "big.png" in line][0].startswith("warning: skipping")


def test_pillows_decompression_bomb_is_a_skip_not_an_internal_error(tmp_path, monkeypatch):
    folder = grey_pngs(tmp_path / "data")
    Image.new("L", (64, 64)).save(folder / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels: above twice this, Pillow's error
    with pytest.warns(UserWarning, match="bomb.png: too many pixels .*decompression bomb"):
        assert len(read_image_folder(folder)) == 12
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # between once and twice: Pillow's warning
    with pytest.raises(UnusableImage, match="decompression bomb"):
        read_image(folder / "bomb.png")


def test_a_folder_too_big_to_hold_is_refused_before_it_is_read(tmp_path, monkeypatch):
    folder = grey_pngs(tmp_path / "data")
    monkeypatch.setattr(limits, "MAX_HELD_BYTES", 11 * 64)
    with pytest.raises(DsdError, match=r"12 images of 8×8×1 would take .* above dsd's limit"):
        read_image_folder(folder)
    with pytest.raises(OptionError, match="image_size is 5000, above dsd's limit of 1024") as info:
        read_image_folder(folder, size=5000)
    assert info.value.field == "image_size"
