"""diffusers interop end to end: a tiny random UNet2DModel pipeline made here is distilled, written back as a
diffusers folder that diffusers itself samples, exported to ONNX and sampled; and the errors on the way."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dsd_core import diffusers_io
from dsd_core.checkpoint import load_model
from dsd_core.errors import DsdError
from dsd_core.images import to_uint8
from dsd_core.noise import initial_noise
from dsd_core.sampling import sample
from dsd_tui.cli import app

diffusers = pytest.importorskip("diffusers")
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def tiny_unet():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    """A DDPMPipeline folder (unet/ + scheduler/) of a v-prediction model on a non-default linear β range."""
    folder = tmp_path_factory.mktemp("ddpm") / "pipe"
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_start=2e-4, beta_end=0.02,
                                        prediction_type="v_prediction")
    diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=scheduler).save_pretrained(str(folder))
    return folder


def diffusers_ddim(folder, steps: int, noise: np.ndarray) -> np.ndarray:
    """diffusers' own loader and DDIMScheduler walk (η = 0, trailing) from our noise; images in [−1, 1]."""
    pipe = diffusers.DDIMPipeline.from_pretrained(str(folder))
    scheduler = pipe.scheduler
    assert scheduler.config.timestep_spacing == "trailing"
    scheduler.set_timesteps(steps)
    x = torch.from_numpy(noise)
    with torch.no_grad():
        for t in scheduler.timesteps:
            pred = pipe.unet(x, t).sample
            x = scheduler.step(pred, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    return x.clamp(-1, 1).numpy()


def test_pipeline_folder_loads_with_its_schedule(pipeline_dir):
    loaded = load_model(pipeline_dir)
    assert loaded.prediction == "v" and loaded.schedule.beta_start == 2e-4
    assert (loaded.model.config.image_size, loaded.model.config.in_channels) == (8, 3)
    unet_only = load_model(pipeline_dir / "unet")  # a bare UNet folder: DDPM defaults
    assert unet_only.prediction == "eps" and unet_only.schedule.beta_start == 1e-4
    # our sampler on the loaded pipeline equals diffusers' DDIM walk on it (trailing grid, 4 | 1000)
    noise = initial_noise(0, 3, (3, 8, 8))
    ours = sample(loaded, 4, num=3, seed=0).numpy()
    pipe = diffusers.DDIMPipeline(unet=loaded.model.unet, scheduler=diffusers.DDIMScheduler.from_config(
        diffusers.DDPMScheduler.from_pretrained(str(pipeline_dir / "scheduler")).config, timestep_spacing="trailing"))
    pipe.save_pretrained(str(pipeline_dir.parent / "as-ddim"))
    np.testing.assert_allclose(ours, diffusers_ddim(pipeline_dir.parent / "as-ddim", 4, noise), atol=1e-4)


def test_distil_write_back_export_and_sample_end_to_end(pipeline_dir, tmp_path):
    out = tmp_path / "distilled"
    result = run("distill", "--model", pipeline_dir, "--schedule", "naive", "--to", 2, "--updates", 4, "--batch", 4,
                 "--lr", 1e-3, "--run-dir", tmp_path / "run", "--save-format", "diffusers", "--out", out,
                 "--sample-every", 100, "--threads", 1)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["dsd.json", "model_index.json", "scheduler", "unet"]
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "DDIMPipeline"
    # the run's own checkpoint (dsd format, diffusers weights inside) and the written folder are the same model
    ckpt, folder = load_model(tmp_path / "run" / "model.safetensors"), load_model(out)
    assert folder.distilled_steps == 2 and ckpt.meta["model_type"] == "diffusers-unet2d"
    before = load_model(pipeline_dir).model.state_dict()
    after = folder.model.state_dict()
    assert max(float((after[k] - v).abs().max()) for k, v in before.items()) > 1e-5  # distillation moved it
    for k, v in ckpt.model.state_dict().items():
        torch.testing.assert_close(folder.model.state_dict()[k], v, rtol=0, atol=0)
    # diffusers itself samples the written folder at the distilled step count as dsd does
    noise = initial_noise(5, 4, (3, 8, 8))
    theirs = diffusers_ddim(out, 2, noise)
    ours = sample(folder, 2, num=4, seed=5).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # dsd sample of the folder, ONNX export of it, and onnxruntime sampling of the export agree
    assert run("sample", "--model", out, "--num", 4, "--seed", 5, tmp_path / "t.npz").exit_code == 0
    assert run("export", "--onnx", "--model", out, tmp_path / "d.onnx").exit_code == 0
    result = run("sample", "--model", tmp_path / "d.onnx", "--num", 4, "--seed", 5, tmp_path / "o.npz")
    assert result.exit_code == 0, result.output
    torch_imgs, ort_imgs = np.load(tmp_path / "t.npz")["arr_0"], np.load(tmp_path / "o.npz")["arr_0"]
    assert torch_imgs.shape == (4, 8, 8, 3)
    assert np.abs(torch_imgs.astype(int) - ort_imgs.astype(int)).max() <= 1
    assert np.abs(torch_imgs.astype(int) - to_uint8(torch.from_numpy(theirs)).astype(int)).max() <= 1


def test_force_replaces_a_pipeline_folder_only_once_the_new_one_is_written(pipeline_dir, tmp_path):
    out = tmp_path / "pipe"
    out.mkdir()
    (out / "old.txt").write_text("the previous pipeline")
    args = ["distill", "--model", pipeline_dir, "--schedule", "naive", "--to", 2, "--updates", 1, "--batch", 2,
            "--ema", 0, "--sample-every", 100, "--save-format", "diffusers", "--out", out, "--threads", 1]
    result = run(*args, "--run-dir", tmp_path / "r1")
    assert result.exit_code == 2 and "already exists" in result.stderr and not (tmp_path / "r1").exists()
    result = run(*args, "--run-dir", tmp_path / "r2", "--force")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["dsd.json", "model_index.json", "scheduler", "unet"]
    assert load_model(out).distilled_steps == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe", "r2"]  # no folder moved aside is left


def test_hub_id_offline_is_one_line(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load this file")

    monkeypatch.setattr(diffusers.UNet2DModel, "from_pretrained", offline)
    with pytest.raises(DsdError, match="could not load 'google/ddpm-cifar10-32' from the Hugging Face hub"):
        load_model("google/ddpm-cifar10-32")
    result = run("sample", "--model", "google/ddpm-cifar10-32", "--steps", 2, tmp_path / "out.png")
    assert (result.exit_code == 2 and result.stderr.startswith("error: could not load")
            and "Traceback" not in result.output)


def test_missing_diffusers_says_how_to_install(monkeypatch, pipeline_dir):
    import builtins

    real_import = builtins.__import__

    def no_diffusers(name, *args, **kwargs):
        if name == "diffusers":
            raise ImportError("No module named 'diffusers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_diffusers)
    with pytest.raises(DsdError, match=r"pip install 'dsd-distill\[diffusers\]'"):
        load_model(pipeline_dir)


def test_bad_folders_and_save_format_errors(tmp_path, pipeline_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DsdError, match="not a diffusers model"):
        load_model(tmp_path / "empty")
    other = tmp_path / "vae"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(DsdError, match="holds a AutoencoderKL"):
        load_model(other)
    with pytest.raises(DsdError, match="needs a diffusers model"):
        diffusers_io.save_diffusers(load_model("digits"), tmp_path / "x", 8)
    with pytest.raises(DsdError, match="already exists"):
        diffusers_io.save_diffusers(load_model(pipeline_dir), pipeline_dir, 8)
    result = run("distill", "--save-format", "diffusers", "--updates", 1)
    assert result.exit_code == 2 and "--out FOLDER" in result.stderr


def test_a_corrupt_scheduler_config_is_one_line(tmp_path, pipeline_dir):
    import shutil

    broken = tmp_path / "pipe"
    shutil.copytree(pipeline_dir, broken)
    (broken / "scheduler" / "scheduler_config.json").write_text('{"beta_schedule": "linear",')
    with pytest.raises(DsdError, match="scheduler_config.json is not readable JSON"):
        load_model(broken)
    result = run("sample", "--model", broken, "--steps", 2, tmp_path / "out.png")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "scheduler_config.json" in result.stderr
    assert not (tmp_path / "out.png").exists()
