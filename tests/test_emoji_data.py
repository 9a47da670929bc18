"""The emoji data: the build script on a fake npm tarball (no network), the loader, RGBA folders on white, and
class names for `--class`."""

import base64
import hashlib
import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dsd_core import data
from dsd_core.classes import EMOJI_CATEGORIES, class_ids, class_names_of
from dsd_core.data import (
    emoji_split,
    load_dataset,
    load_emoji,
    load_image_folder,
    load_labels,
    on_white,
    read_image_folder,
)
from dsd_core.errors import DsdError

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_emoji", ROOT / "scripts" / "make_emoji.py")
make_emoji = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_emoji)

KNOWN = (200, 100, 50, 128)  # on white: round(c·128/255 + 255·127/255)
ON_WHITE = (227, 177, 152)


def rgba_png(colour, seed: int) -> bytes:
    """A 64×64 RGBA emoji stand-in: transparent corners, a noisy opaque middle, one pixel of `colour`."""
    a = np.random.default_rng(seed).integers(0, 256, (64, 64, 4), dtype=np.uint8)
    a[:24, :24, 3] = 0  # wider than Lanczos reaches at 16 px
    a[32:56, 32:56, 3] = 255
    a[0, 63] = colour
    buf = io.BytesIO()
    Image.fromarray(a, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


ENTRIES = [  # two base emoji of People & Body (one with a skin tone), one flag, one smiley without a Twemoji
    {"unified": "1F44B", "image": "1f44b.png", "category": "People & Body", "subcategory": "hand-fingers-open",
     "sort_order": 2, "has_img_google": True, "has_img_twitter": True,
     "skin_variations": {"1F3FB": {"unified": "1F44B-1F3FB", "image": "1f44b-1f3fb.png", "has_img_google": True,
                                   "has_img_twitter": True}}},
    {"unified": "1F1EB-1F1F7", "image": "1f1eb-1f1f7.png", "category": "Flags", "subcategory": "country-flag",
     "sort_order": 3, "has_img_google": True, "has_img_twitter": True},
    {"unified": "1F600", "image": "1f600.png", "category": "Smileys & Emotion", "subcategory": "face-smiling",
     "sort_order": 1, "has_img_google": True, "has_img_twitter": False},
]
FILES = ("1f44b.png", "1f44b-1f3fb.png", "1f1eb-1f1f7.png", "1f600.png")


def fake_tarball(folder: Path, set_name: str) -> Path:
    """An npm tarball laid out as emoji-datasource-<set> is: package/{emoji.json, README.md, …, img/<set>/64/}."""
    name, version, _ = make_emoji.PACKAGES[set_name]
    members = {"package/emoji.json": json.dumps(ENTRIES).encode(),
               "package/README.md": f"* {make_emoji.README_SAYS[set_name]}(https://…)".encode(),
               "package/LICENSE": b"The MIT License (MIT)",
               "package/package.json": json.dumps({"name": name, "license": "MIT"}).encode()}
    for i, file in enumerate(FILES):
        if set_name == "google" or file != "1f600.png":
            members[f"package/img/{set_name}/64/{file}"] = rgba_png(KNOWN, seed=i + 10 * len(set_name))
    path = folder / f"{name}-{version}.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for member, content in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture
def tarballs(tmp_path, monkeypatch):
    """The fake tarballs of both sets, their integrity pinned in place of the real packages'."""
    folder = tmp_path / "tarballs"
    folder.mkdir()
    pins = {}
    for s in make_emoji.SETS:
        path = fake_tarball(folder, s)
        pins[s] = (*make_emoji.PACKAGES[s][:2], make_emoji.integrity(path))
    monkeypatch.setattr(make_emoji, "PACKAGES", pins)
    return folder


@pytest.fixture
def built(tarballs, tmp_path, monkeypatch):
    """The script run on the fake tarballs, its files the loader's."""
    out = tmp_path / "assets"
    assert make_emoji.main(["--tarballs", str(tarballs), "--out-dir", str(out)]) == 0
    monkeypatch.setattr(data, "emoji_path", lambda name: out / data.EMOJI_FILES[name][0])
    return out


def test_integrity_is_npm_sha512_and_a_wrong_one_is_refused(tarballs):
    path = next(tarballs.glob("*google*"))
    digest = base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()
    assert make_emoji.integrity(path) == "sha512-" + digest
    make_emoji.verify(path, "sha512-" + digest)
    with pytest.raises(make_emoji.BuildError, match="does not match the pinned"):
        make_emoji.verify(path, "sha512-" + base64.b64encode(b"\0" * 64).decode())


def test_build_refuses_a_tarball_that_is_not_the_pinned_one(tarballs, monkeypatch, capsys):
    monkeypatch.setitem(make_emoji.PACKAGES, "twitter", (*make_emoji.PACKAGES["twitter"][:2], "sha512-AAAA"))
    assert make_emoji.main(["--tarballs", str(tarballs), "--out-dir", str(tarballs)]) == 1
    assert "does not match the pinned" in capsys.readouterr().err
    assert not list(tarballs.glob("*.npz"))


def test_npm_missing_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setattr(make_emoji.shutil, "which", lambda _: None)
    with pytest.raises(make_emoji.BuildError, match="npm not found: install Node.js .*--tarballs"):
        make_emoji.npm_pack("emoji-datasource-google", "16.0.0", tmp_path)


def test_on_white_is_exact():
    im = Image.fromarray(np.array([[KNOWN, (9, 9, 9, 0), (1, 2, 3, 255)]], np.uint8), "RGBA")
    assert np.asarray(on_white(im)).tolist() == [[list(ON_WHITE), [255, 255, 255], [1, 2, 3]]]
    grey = Image.fromarray(np.array([[[0, 0], [100, 255]]], np.uint8), "LA")
    assert on_white(grey).mode == "L" and np.asarray(on_white(grey)).tolist() == [[255, 100]]
    rgb = Image.new("RGB", (2, 2), (5, 6, 7))
    assert on_white(rgb) is rgb


def test_built_files_hold_images_labels_names_and_provenance(built):
    with np.load(built / "emoji32.npz") as f32, np.load(built / "emoji16.npz") as f16:
        a32, a16 = dict(f32), dict(f16)
    # google: 4 images (the smiley first, by sort_order), twitter: 3 (no smiley)
    assert a32["images"].shape == (7, 32, 32, 3) and a16["images"].shape == (7, 16, 16, 3)
    assert a32["images"].dtype == np.uint8
    cat = {n: i for i, n in enumerate(EMOJI_CATEGORIES)}
    people, flags, smileys = cat["People & Body"], cat["Flags"], cat["Smileys & Emotion"]
    assert a32["category"].tolist() == [smileys, people, people, flags, people, people, flags]
    assert a32["set"].tolist() == [0, 0, 0, 0, 1, 1, 1] and a32["set_names"].tolist() == ["google", "twitter"]
    assert a32["group"].tolist() == [0, 1, 1, 2, 1, 1, 2]  # a skin tone is in its base emoji's group
    assert a32["code"].tolist()[:3] == ["1F600", "1F44B", "1F44B-1F3FB"]
    assert a32["category_names"].tolist() == list(EMOJI_CATEGORIES)
    assert a32["subcategory_names"][a32["subcategory"][3]] == "country-flag"
    meta = json.loads(str(a32["provenance"]))
    assert meta["command"] == "python scripts/make_emoji.py"
    assert meta["packages"]["twitter"]["image_licence"].startswith("CC-BY-4.0")
    assert meta["packages"]["google"]["image_licence"].startswith("Apache-2.0")
    assert meta["packages"]["google"]["package_licence"] == "MIT" and "MIT" in meta["emoji_json_licence"]
    # the corner was transparent: white after compositing, at both sizes
    assert (a32["images"][:, 0, 0] == 255).all() and (a16["images"][:, 0, 0] == 255).all()


def test_an_rgba_folder_loads_as_the_built_set(built, tarballs, tmp_path):
    """A folder of the packages' PNGs, read at 32 px, is the shipped set's pixels: both composite on white,
    then resize with Lanczos."""
    folder = tmp_path / "pngs"
    folder.mkdir()
    with tarfile.open(next(tarballs.glob("*google*"))) as tar:
        for i, file in enumerate(("1f600.png", "1f44b.png", "1f44b-1f3fb.png", "1f1eb-1f1f7.png")):
            (folder / f"{i}.png").write_bytes(tar.extractfile(f"package/img/google/64/{file}").read())
    with np.load(built / "emoji32.npz") as f:
        np.testing.assert_array_equal(read_image_folder(folder, size=32), f["images"][:4])
    full = read_image_folder(folder)
    assert full.shape == (4, 64, 64, 3) and tuple(full[0, 0, 63]) == ON_WHITE


def test_transparent_palette_and_grey_alpha_folders_composite_on_white(tmp_path):
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "a.png", transparency=0)
    x = load_image_folder(tmp_path)
    assert x.shape == (1, 3, 4, 4) and x[0, :, 0, 0].tolist() == [1, 1, 1] and x[0, :, 1, 1].tolist() == [1, -1, -1]
    (tmp_path / "a.png").unlink()
    Image.fromarray(np.array([[[0, 0], [0, 255]]] * 2, np.uint8), "LA").save(tmp_path / "b.png")
    x = load_image_folder(tmp_path)
    assert x.shape == (1, 1, 2, 2) and x.flatten().tolist() == [1, -1, 1, -1]


def test_loader_gives_the_train_split_in_range_with_category_labels(built):
    x, name = load_dataset("emoji16")
    assert name == "emoji16:train" and x.shape == (7, 3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() == 1  # white background
    assert load_labels("emoji").tolist() == [0, 1, 1, 9, 1, 1, 9]  # tiny categories have no test emoji
    assert load_emoji("test", "emoji")[0].shape == (0, 3, 32, 32)
    with pytest.raises(DsdError, match=r"emoji16 is 16×16 .*image_size"):
        load_dataset("emoji16", 32)


def test_a_missing_data_file_names_the_command(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "emoji_path", lambda name: tmp_path / "emoji32.npz")
    with pytest.raises(DsdError, match=r"missing: build it .*`python scripts/make_emoji.py` \(needs npm\)"):
        load_dataset("emoji")


def test_split_holds_out_whole_base_emoji_per_category():
    group = np.repeat(np.arange(40), 3)  # 40 base emoji, 3 images each (tones, sets)
    category = np.where(group < 20, 0, 9).astype(np.uint8)
    train, test = emoji_split(category, group, "train"), emoji_split(category, group, "test")
    assert len(test) == 12 and sorted(np.concatenate([train, test]).tolist()) == list(range(120))
    assert not set(group[train]) & set(group[test])
    assert np.bincount(category[test], minlength=10)[[0, 9]].tolist() == [6, 6]
    np.testing.assert_array_equal(test, emoji_split(category, group, "test"))


def test_shipped_emoji_files_if_present():
    for name, (_, side) in data.EMOJI_FILES.items():
        if not data.emoji_path(name).is_file():
            continue
        arrays = data.read_emoji(name)
        assert arrays["images"].shape == (7572, side, side, 3)
        assert np.bincount(arrays["set"]).tolist() == [3786, 3786]
        assert set(arrays["category"].tolist()) == set(range(len(EMOJI_CATEGORIES)))
        assert "CC-BY-4.0" in str(arrays["provenance"]) and "Apache-2.0" in str(arrays["provenance"])


def test_class_names_as_well_as_ids():
    names = class_names_of("emoji:train")
    assert names == EMOJI_CATEGORIES and class_names_of("emoji16") == names
    assert class_names_of("digits:train") is None and class_names_of(None) is None
    assert class_ids("Food & Drink", 2, 10, names).tolist() == [4, 4]
    assert class_ids("food", 1, 10, names)[0] == 4 and class_ids("people-body", 1, 10, names)[0] == 1
    assert class_ids("FLAGS", 1, 10, names)[0] == 9 and class_ids("3", 1, 10, names)[0] == 3
    assert class_ids("none", 1, 10, names)[0] == 10


def test_an_unknown_or_ambiguous_class_name_lists_the_valid_names():
    names = EMOJI_CATEGORIES
    for spec, why in (("zebra", "is none of"), ("s", "matches several of")):
        with pytest.raises(DsdError) as err:
            class_ids(spec, 1, 10, names)
        message = str(err.value)
        assert why in message and "\n" not in message
        assert "0 Smileys & Emotion" in message and "9 Flags" in message
    with pytest.raises(DsdError, match="class id, 'all' or 'none'"):
        class_ids("food", 1, 3, names)  # names that are not this model's are not used
