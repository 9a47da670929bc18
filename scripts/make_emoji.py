"""Build dsd's colour data set, emoji, from the npm packages of two open emoji sets.

`python scripts/make_emoji.py` fetches `emoji-datasource-google` (Noto Emoji images) and
`emoji-datasource-twitter` (Twemoji graphics) with `npm pack`, at pinned versions whose tarballs must match the
registry's sha512 integrity pinned here, composites their 64×64 RGBA PNGs on white, shrinks them with Lanczos
(as `dsd_core.data.read_image_folder` resizes a folder, so a folder of these PNGs loads as the same pixels) and
writes `dsd_core/assets/emoji16.npz` and `emoji32.npz`: uint8 images (N, H, W, 3), per image its category,
sub-category, set and base emoji (`group`: skin-tone variants share their base's), the names of each, and the
provenance (packages, versions, integrity, licences, command). `--tarballs DIR` uses tarballs already there
(still verified) instead of npm.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing it

from dsd_core.classes import EMOJI_CATEGORIES  # noqa: E402
from dsd_core.data import on_white  # noqa: E402

SETS = ("google", "twitter")  # the set label's ids, in this order
PACKAGES = {  # set: (npm package, pinned version, the registry's dist.integrity of its tarball)
    "google": ("emoji-datasource-google", "16.0.0",
               "sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A=="),
    "twitter": ("emoji-datasource-twitter", "16.0.0",
                "sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ=="),
}
# What each tarball's README.md and LICENSE say (checked when the data was built, and again on every build by
# `check_licences`): the package's code and emoji.json are MIT; the images are licensed by their own projects.
IMAGE_LICENCES = {
    "google": "Apache-2.0: Noto Emoji images (https://github.com/googlefonts/noto-emoji), Copyright Google; "
              "upstream says its flag images (third_party/region-flags) are public domain or otherwise exempt "
              "from copyright",
    "twitter": "CC-BY-4.0: Twemoji graphics (https://github.com/jdecked/twemoji), Copyright Twitter, Inc and "
               "other contributors, https://creativecommons.org/licenses/by/4.0/",
}
README_SAYS = {"google": "Google/Noto images, are available under the [Apache License 2.0]",
               "twitter": "Twitter images are available under the [Creative Commons Attribution 4.0 license]"}
CHANGES = "composited on white, resized from 64×64 with Lanczos (Pillow)"
SIZES = (16, 32)
SOURCE_SIZE = 64
OUT_DIR = ROOT / "dsd_core" / "assets"
COMMAND = "python scripts/make_emoji.py"


class BuildError(Exception):
    """A step of the build that cannot go on; its message is the one line the script prints."""


def integrity(path: Path) -> str:
    """The npm registry's `dist.integrity` of a file: sha512, base64."""
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def verify(path: Path, expected: str) -> None:
    """Refuse a tarball that is not byte-for-byte the pinned one."""
    got = integrity(path)
    if got != expected:
        raise BuildError(f"{path.name}: integrity {got[:30]}… does not match the pinned {expected[:30]}…; refusing it")


def npm_pack(name: str, version: str, dest: Path) -> Path:
    """`npm pack NAME@VERSION` into `dest`; the tarball's path."""
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError(f"npm not found: install Node.js (it ships npm) and run `{COMMAND}` again, or give "
                         f"--tarballs DIR holding {name}-{version}.tgz")
    done = subprocess.run([npm, "pack", f"{name}@{version}", "--pack-destination", str(dest), "--json",
                           "--ignore-scripts"], capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"npm pack {name}@{version} failed: {done.stderr.strip().splitlines()[-1:]}")
    return dest / json.loads(done.stdout)[0]["filename"]


def read_tarball(path: Path, set_name: str) -> tuple[list[dict], dict[str, bytes], dict[str, str]]:
    """(emoji.json's entries, {file name: PNG bytes} of `img/<set>/64/`, {LICENSE, README.md, package.json: text})."""
    entries, pngs, texts = None, {}, {}
    folder = f"package/img/{set_name}/{SOURCE_SIZE}/"
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            if member.name.startswith(folder) and member.name.endswith(".png"):
                pngs[member.name[len(folder):]] = tar.extractfile(member).read()
            elif member.name == "package/emoji.json":
                entries = json.load(tar.extractfile(member))
            elif member.name in ("package/LICENSE", "package/README.md", "package/package.json"):
                texts[member.name.removeprefix("package/")] = tar.extractfile(member).read().decode()
    if entries is None or not pngs:
        raise BuildError(f"{path.name} holds no package/emoji.json or no {folder}*.png")
    return entries, pngs, texts


def check_licences(texts: dict[str, str], set_name: str) -> str:
    """The package's own licence (package.json), after checking that its README still grants the image licence
    recorded here; a changed package must be read again by a person."""
    if README_SAYS[set_name] not in texts.get("README.md", ""):
        raise BuildError(f"the {set_name} package's README no longer says {README_SAYS[set_name]!r}: check its "
                         "image licence and update IMAGE_LICENCES")
    return json.loads(texts["package.json"]).get("license", "not stated")


def emoji_rows(entries: list[dict], set_name: str) -> list[dict]:
    """One row per image the set has: each emoji and each of its skin-tone variants, in `sort_order`, with the
    base emoji's category, sub-category and index (`group`)."""
    rows = []
    for group, entry in enumerate(sorted(entries, key=lambda e: e["sort_order"])):
        variants = [entry] + [entry["skin_variations"][k] for k in sorted(entry.get("skin_variations") or {})]
        for v in variants:
            if v.get(f"has_img_{set_name}"):
                rows.append({"image": v["image"], "code": v["unified"], "category": entry["category"],
                             "subcategory": entry["subcategory"], "group": group})
    return rows


def decode_on_white(png: bytes) -> Image.Image:
    """A PNG as RGB on white, at the source size."""
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        rgb = on_white(im).convert("RGB")  # a PNG without alpha comes back in its own mode
    if rgb.size != (SOURCE_SIZE, SOURCE_SIZE):
        rgb = rgb.resize((SOURCE_SIZE, SOURCE_SIZE), Image.Resampling.LANCZOS)
    return rgb


def shrink(im: Image.Image, size: int) -> np.ndarray:
    """uint8 (size, size, 3), Lanczos-resized as `read_image_folder` resizes a folder's images."""
    return np.asarray(im if im.size == (size, size) else im.resize((size, size), Image.Resampling.LANCZOS))


def build(sources: dict[str, tuple[list[dict], dict[str, bytes]]], sizes=SIZES) -> dict[int, dict[str, np.ndarray]]:
    """{size: arrays} from each set's (emoji.json entries, PNGs); the arrays `write` saves, provenance aside."""
    images = {size: [] for size in sizes}
    rows_all, subcategories = [], []
    for set_id, set_name in enumerate(SETS):
        entries, pngs = sources[set_name]
        for row in emoji_rows(entries, set_name):
            if row["image"] not in pngs:
                raise BuildError(f"emoji.json lists {row['image']} for {set_name}, but its tarball lacks it")
            rgb = decode_on_white(pngs[row["image"]])
            for size in sizes:
                images[size].append(shrink(rgb, size))
            rows_all.append({**row, "set": set_id})
            if row["subcategory"] not in subcategories:
                subcategories.append(row["subcategory"])
    found = {row["category"] for row in rows_all}
    if not found <= set(EMOJI_CATEGORIES):
        raise BuildError(f"categories {sorted(found - set(EMOJI_CATEGORIES))} are new: add them to "
                         "dsd_core/classes.py EMOJI_CATEGORIES")
    labels = {
        "category": np.array([EMOJI_CATEGORIES.index(r["category"]) for r in rows_all], np.uint8),
        "subcategory": np.array([subcategories.index(r["subcategory"]) for r in rows_all], np.uint8),
        "set": np.array([r["set"] for r in rows_all], np.uint8),
        "group": np.array([r["group"] for r in rows_all], np.uint16),
        "code": np.array([r["code"] for r in rows_all]),
        "category_names": np.array(EMOJI_CATEGORIES),
        "subcategory_names": np.array(subcategories),
        "set_names": np.array(SETS),
    }
    return {size: {"images": np.stack(images[size]), **labels} for size in sizes}


def provenance(package_licences: dict[str, str], mit_text: str) -> dict:
    """What the data file records of where it came from and under which licences."""
    return {
        "command": COMMAND,
        "changes": CHANGES,
        "packages": {s: {"name": PACKAGES[s][0], "version": PACKAGES[s][1], "integrity": PACKAGES[s][2],
                         "package_licence": package_licences[s], "image_licence": IMAGE_LICENCES[s]} for s in SETS},
        "emoji_json_licence": "MIT, emoji-datasource, Copyright (c) 2013 Cal Henderson: " + mit_text,
    }


def write(arrays: dict[str, np.ndarray], meta: dict, path: Path) -> int:
    """One compressed .npz (written beside and renamed, so a killed build leaves no half file); its bytes."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays, provenance=np.array(json.dumps(meta, ensure_ascii=False)))
    tmp.replace(path)
    return path.stat().st_size


def fetch(tarballs: Path | None, work: Path) -> dict[str, Path]:
    """Each set's verified tarball: from `tarballs` if given, else by `npm pack` into `work`."""
    paths = {}
    for s in SETS:
        name, version, expected = PACKAGES[s]
        path = tarballs / f"{name}-{version}.tgz" if tarballs else npm_pack(name, version, work)
        if not path.is_file():
            raise BuildError(f"{path} not found")
        verify(path, expected)
        paths[s] = path
    return paths


def report(arrays: dict[str, np.ndarray]) -> str:
    """Images per category and per set, for the log."""
    cats = np.bincount(arrays["category"], minlength=len(EMOJI_CATEGORIES))
    sets = np.bincount(arrays["set"], minlength=len(SETS))
    return "; ".join(f"{n}: {c}" for n, c in zip(EMOJI_CATEGORIES, cats)) + " | " + ", ".join(
        f"{n}: {c}" for n, c in zip(SETS, sets))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarballs", type=Path, help="a folder holding the pinned tarballs (no npm needed)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), choices=SIZES)
    args = parser.parse_args(argv)
    start = time.time()
    try:
        with tempfile.TemporaryDirectory() as work:
            paths = fetch(args.tarballs, Path(work))
            sources, licences, mit = {}, {}, ""
            for s, path in paths.items():
                entries, pngs, texts = read_tarball(path, s)
                licences[s], mit = check_licences(texts, s), texts.get("LICENSE", "").strip()
                sources[s] = (entries, pngs)
        built = build(sources, tuple(args.sizes))
    except BuildError as exc:
        print(f"make_emoji: {exc}", file=sys.stderr)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    meta = provenance(licences, mit)
    for size, arrays in built.items():
        path = args.out_dir / f"emoji{size}.npz"
        print(f"wrote {path} ({write(arrays, meta, path) / 1e6:.2f} MB): {len(arrays['images'])} images "
              f"{arrays['images'].shape[1:]}; {report(arrays)}")
    print(f"done in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
