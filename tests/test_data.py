import numpy as np
import pytest
import torch
from PIL import Image

from dsd_core.data import load_dataset, load_digits, load_image_folder
from dsd_core.errors import DsdError


def test_digits_split_is_fixed_and_disjoint():
    train, ytrain = load_digits("train")
    test, _ = load_digits("test")
    everything, _ = load_digits("all")
    assert train.shape == (1500, 1, 8, 8) and test.shape == (297, 1, 8, 8) and everything.shape[0] == 1797
    assert train.min() == -1 and train.max() == 1
    assert set(ytrain.tolist()) == set(range(10))
    rows = lambda x: {tuple(r) for r in x.reshape(len(x), -1).tolist()}  # noqa: E731
    assert len(rows(train) | rows(test)) <= len(rows(everything))
    torch.testing.assert_close(load_digits("test")[0], test)


def _save(path, array, mode):
    Image.fromarray(array, mode=mode).save(path)


def test_image_folder_grey_resized(tmp_path):
    (tmp_path / "sub").mkdir()
    _save(tmp_path / "a.png", np.full((16, 16), 255, np.uint8), "L")
    _save(tmp_path / "sub" / "b.png", np.zeros((16, 16), np.uint8), "L")
    x = load_image_folder(tmp_path, size=8)
    assert x.shape == (2, 1, 8, 8)
    torch.testing.assert_close(x[0], torch.ones(1, 8, 8))
    torch.testing.assert_close(x[1], -torch.ones(1, 8, 8))


def test_image_folder_rgb_and_unreadable_files(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    _save(tmp_path / "red.png", rgb, "RGB")
    _save(tmp_path / "grey.png", np.full((8, 8), 128, np.uint8), "L")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        x = load_image_folder(tmp_path)
    assert x.shape == (2, 3, 8, 8)
    assert x[1, 0].min() == 1 and x[1, 1].max() == -1  # red.png sorts after grey.png


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DsdError, match="no readable images"):
        load_image_folder(tmp_path)
    with pytest.raises(DsdError, match="not found"):
        load_dataset(str(tmp_path / "missing"))
