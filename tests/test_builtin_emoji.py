"""The shipped colour model `emoji16-cond` and its DSD-distilled few-step versions: RGB 16×16, the 10 emoji
categories by name, float16 storage, their default guidance scale, and a class asked for by name samples finite
images of the right shape."""

import pytest
import torch

from dsd_core.builtins import available_builtins, builtin_path
from dsd_core.checkpoint import load_model, load_tensors
from dsd_core.classes import class_ids, class_names_of
from dsd_core.sampling import sample


def test_the_emoji_model_ships_as_a_float16_rgb_category_model():
    assert "emoji16-cond" in available_builtins()
    tensors, meta = load_tensors(builtin_path("emoji16-cond"))
    assert {v.dtype for v in tensors.values()} == {torch.float16}
    loaded = load_model("emoji16-cond")
    cfg = loaded.model.config
    assert (cfg.in_channels, cfg.image_size, cfg.num_classes) == (3, 16, 10)
    assert loaded.prediction == "v" and loaded.guidance == 2.0
    names = class_names_of(meta["provenance"]["data"])
    assert names is not None and len(names) == 10 and "Flags" in names
    flags = class_ids("flags", 2, cfg.num_classes, names)
    images = sample(loaded, 2, 2, seed=0, classes=flags, guidance=loaded.guidance)
    assert images.shape == (2, 3, 16, 16) and bool(torch.isfinite(images).all())
    assert float(images.abs().max()) <= 1.0


@pytest.mark.parametrize("name, steps", [("emoji16-cond-dsd8", 8), ("emoji16-cond-dsd4", 4),
                                         ("emoji16-cond-dsd2", 2)])
def test_the_distilled_emoji_models_ship_with_their_steps_guidance_and_base(name, steps):
    """DSD-distilled from emoji16-cond at w = 2: they sample at their own step count and that scale by default,
    name their built-in base, and make finite RGB images of the asked-for category's shape."""
    assert name in available_builtins()
    tensors, meta = load_tensors(builtin_path(name))
    assert {v.dtype for v in tensors.values()} == {torch.float16}
    loaded = load_model(name)
    assert loaded.distilled_steps == steps and loaded.guidance == 2.0 and loaded.prediction == "v"
    provenance = meta["provenance"]
    assert provenance["base_model"] == "emoji16-cond" and provenance["method"] == "dsd-stage"
    assert provenance["guidance"] == 2.0 and provenance["data"] == "emoji16:train"
    names = class_names_of(provenance["data"])
    classes = class_ids("Food & Drink", 3, loaded.model.config.num_classes, names)
    images = sample(loaded, steps, 3, seed=0, classes=classes, guidance=loaded.guidance)
    assert images.shape == (3, 3, 16, 16) and bool(torch.isfinite(images).all())
