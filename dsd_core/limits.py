"""The limits on every size dsd reads from a file or a flag, in one place, with the checks that apply them.

A size written in a file is a claim its length does not back: a 737 KB checkpoint can claim a schedule of 10⁹
timesteps, ONNX metadata a 30000×30000 image, a 3 MB `.npz` header an array of 3 GiB. So every such size, and
every count flag, is checked here before anything is allocated; one above its limit is a one-line error that
names the value and the limit. Weights are different: a model is first built without memory (torch's meta
device) and must match the tensors its file really holds (`checkpoint.build_model`), so a config cannot make
dsd allocate more than the file's own bytes.

The limits sit far above what dsd runs (8×8 digits to 256×256 diffusers UNets, schedules of 1000 steps); raise
one here if real work needs it. Torch-free: the ONNX runtime path checks with it too.
"""

from __future__ import annotations

import math

from .errors import DsdError, OptionError

MAX_TIMESTEPS = 100_000  # length of a noise schedule (real ones: 1000; a few papers 4000); also caps step counts
MAX_IMAGE_SIDE = 1024  # pixels per side of a model's images (pixel-space UNets: 8 … 256)
MAX_CHANNELS = 16  # channels of a model's images (1 or 3; 4 for latents)
MAX_WIDTH = 8192  # channels of one network layer (the widest UNet2DModel blocks have 1024 or so)
MAX_LEVELS = 8  # resolutions of a UNet
MAX_BLOCKS = 16  # ResBlocks per resolution
MAX_CLASSES = 100_000  # labels of a class-conditional model
MAX_BATCH = 65_536  # --batch: images per network call
MAX_BATCH_VALUES = 2**28  # noise values of one batch (batch × C × H × W): 1 GiB of float32, before activations
MAX_NUM = 10_000_000  # --num: images of one command (.npz and folder outputs are written batch by batch)
MAX_GRID_IMAGES = 4096  # tiles of one .png grid: one picture of 64 × 64 tiles, each at least 64 px wide
MAX_HELD_BYTES = 2**31  # 2 GiB of uint8 pixels held at once: an .npz or image folder read, eval's samples, a grid
MAX_FILE_PIXELS = 4096 * 4096  # pixels of one image file read as data (Pillow's own bomb warning: 89 M)
MAX_SEED = 2**64 - 1  # seeds: torch.Generator.manual_seed takes at most 64 bits (numpy's PCG64 takes any size)

WHERE = "dsd_core/limits.py"


def _integer(value: object) -> int | None:
    """`value` as an int if it is one (an integral float too, as JSON may write it); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def size(what: str, value: object, limit: int, low: int = 1) -> int:
    """A size (of a config, whoever made it): an integer in [low, limit], else a one-line error naming it, its
    value and the limit."""
    n = _integer(value)
    if n is None:
        raise DsdError(f"{what} must be a whole number, got {str(value)[:40]!r}")
    if n < low:
        raise DsdError(f"{what} is {n}; it must be at least {low}")
    if n > limit:
        raise DsdError(f"{what} is {n}, above dsd's limit of {limit} ({WHERE})")
    return n


def size_in_file(source: object, what: str, value: object, limit: int, low: int = 1) -> int:
    """A size read from a file: `size`, with the file named first and `; not loaded` after a limit."""
    try:
        return size(what, value, limit, low)
    except DsdError as exc:
        raise DsdError(f"{source}: {exc}" + ("; not loaded" if str(exc).endswith(f"({WHERE})") else "")) from None


def bytes_in_file(source: object, what: str, count: int, limit: int | None = None) -> None:
    """Bytes a file says it unpacks to, checked before they are allocated (against `MAX_HELD_BYTES` unless
    another `limit` is given)."""
    limit = MAX_HELD_BYTES if limit is None else limit
    if count > limit:
        raise DsdError(f"{source}: {what} would take {_bytes(count)} in memory, above dsd's limit of {_bytes(limit)} "
                       f"({WHERE}); not loaded")


def at_most(limit: int, unit: str, **settings: int) -> None:
    """Each count setting (field=value) at most `limit` (`unit`: what it counts, for the message)."""
    for field, value in settings.items():
        if value > limit:
            raise OptionError(f"{{{field}}} is {{value}}, above dsd's limit of {{limit}} {unit} ({WHERE})",
                              value=value, limit=limit)


def check_batch(batch: int, image_values: int, field: str = "batch") -> None:
    """A batch of images of `image_values` numbers each (C × H × W): its count and the noise it holds."""
    at_most(MAX_BATCH, "images per batch", **{field: batch})
    if batch * image_values > MAX_BATCH_VALUES:
        fits = max(1, MAX_BATCH_VALUES // image_values)
        raise OptionError(f"{{{field}}} {{count}} of images of {{values}} values each holds more noise than dsd's "
                          f"limit of {{limit}} values per batch ({WHERE}); use at most {{fits}}", count=batch,
                          values=image_values, limit=MAX_BATCH_VALUES, fits=fits)


def check_held(num: int, image_bytes: int, field: str = "num", why: str = "held in memory at once") -> None:
    """`num` uint8 images of `image_bytes` each, all in memory at once (a grid, eval's samples)."""
    if num * image_bytes > MAX_HELD_BYTES:
        fits = max(1, MAX_HELD_BYTES // image_bytes)
        raise OptionError(f"{{{field}}} {{count}} images of {{size}} bytes are {_bytes(num * image_bytes)} {why}, "
                          f"above dsd's limit of {_bytes(MAX_HELD_BYTES)} ({WHERE}); use at most {{fits}}", count=num,
                          size=image_bytes, fits=fits)


def _bytes(count: int) -> str:
    """`count` bytes for a message: 3 significant digits of the largest unit that keeps it ≥ 1."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = 2 ** (10 * ("KMGT".index(unit[0]) + 1))
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"
