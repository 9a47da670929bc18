"""Checkpoints: safetensors tensors plus JSON metadata, written atomically, loaded without unpickling.

A model checkpoint is one `.safetensors` file whose metadata key `dsd` holds a JSON object: format version,
the UNet config, the noise schedule, the prediction type, whether the weights are an EMA, the step count the
model was distilled for (if any) and its provenance. So `load_model(path)` needs no other argument.
Training states (model, EMA, optimizer, counters, RNG) use the same container with `kind = "train-state"`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from .atomic import atomic_write_bytes
from .builtins import available_builtins, resolve_model_path
from .checks import fields_of, json_type
from .ddim import check_prediction
from .errors import DsdError
from .limits import (
    MAX_BLOCKS,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_IMAGE_SIDE,
    MAX_LEVELS,
    MAX_TIMESTEPS,
    MAX_WIDTH,
    size_in_file,
)
from .models import UNet, UNetConfig
from .schedule import NoiseSchedule

FORMAT_VERSION = 1


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write tensors + JSON metadata as one safetensors file, atomically."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {"format_version": FORMAT_VERSION, **meta}
    return atomic_write_bytes(path, safetensors_bytes(flat, metadata={"dsd": json.dumps(meta)}))


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by `save_tensors`; every way it can be wrong becomes a one-line DsdError."""
    path = Path(path)
    if not path.is_file():
        raise DsdError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # the Rust parser raises several types for truncated/garbage files
        raise DsdError(f"{path} is not a readable safetensors file (corrupt or truncated?): {exc}") from None
    if "dsd" not in header:
        raise DsdError(f"{path} is a safetensors file but not a dsd checkpoint (no dsd metadata)")
    try:
        meta = json.loads(header["dsd"])
    except json.JSONDecodeError:
        raise DsdError(f"{path} has corrupt dsd metadata") from None
    if not isinstance(meta, dict):
        raise DsdError(f"{path} has corrupt dsd metadata (a JSON {type(meta).__name__}, not an object)")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise DsdError(f"{path} has checkpoint format {version!r}; this dsd reads format {FORMAT_VERSION}")
    return tensors, meta


def file_sha256(path: str | Path) -> str:
    """The identity of a checkpoint file (or of a diffusers folder: its files' names and bytes), recorded in
    provenance and shown by `dsd info`; a hub id has none ("")."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes())
        return digest.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


@dataclass
class LoadedModel:
    """A denoiser and everything needed to sample from it."""

    model: UNet
    schedule: NoiseSchedule
    prediction: str
    meta: dict = field(default_factory=dict)

    @property
    def distilled_steps(self) -> int | None:
        return self.meta.get("distilled_steps")

    @property
    def guidance(self) -> float | None:
        """The guidance scale a conditional model was distilled with (sample with it), if any."""
        return self.meta.get("guidance")


def model_meta(
    model: UNet,
    schedule: NoiseSchedule,
    prediction: str,
    *,
    ema: bool,
    distilled_steps: int | None = None,
    provenance: dict | None = None,
    guidance: float | None = None,
) -> dict:
    extra = {} if guidance is None else {"guidance": guidance}
    return {
        "kind": "model",
        "model_type": getattr(model, "model_type", "unet"),
        "model_config": model.config.to_dict(),
        "schedule": schedule.to_dict(),
        "prediction": check_prediction(prediction),
        "ema": ema,
        "distilled_steps": distilled_steps,
        "provenance": provenance or {},
        **extra,
    }


def save_model(path: str | Path, model: UNet, schedule: NoiseSchedule, prediction: str, **info) -> Path:
    """Save a denoiser for sampling (`info`: ema, distilled_steps, provenance, guidance)."""
    return save_tensors(path, prefixed("model", model.state_dict()), model_meta(model, schedule, prediction, **info))


def check_sizes(meta: dict, path: str | Path) -> None:
    """Every size in a model's metadata within `dsd_core/limits.py`, checked before anything is built: the
    schedule's length, the image size and channels, the network's widths, depth and classes."""
    schedule, config = meta.get("schedule"), meta.get("model_config")
    if not isinstance(schedule, dict) or not isinstance(config, dict):
        raise DsdError(f"{path}: incomplete or invalid model metadata (no schedule or model_config object)")
    if "num_timesteps" in schedule:
        size_in_file(path, "the schedule's num_timesteps", schedule["num_timesteps"], MAX_TIMESTEPS)
    if meta.get("model_type") == "diffusers-unet2d":
        from .models.diffusers_unet import check_unet2d_config

        check_unet2d_config(config.get("unet"), path, "the model config's unet ")
        counts = {"image_size": (config.get("image_size"), MAX_IMAGE_SIDE),
                  "in_channels": (config.get("in_channels"), MAX_CHANNELS)}
        widths = [1]
    else:
        counts = {k: (config.get(k), limit) for k, limit in (
            ("image_size", MAX_IMAGE_SIDE), ("in_channels", MAX_CHANNELS), ("base_channels", MAX_WIDTH),
            ("num_groups", MAX_WIDTH), ("num_classes", MAX_CLASSES))}
        counts["num_res_blocks"] = (config.get("num_res_blocks"), MAX_BLOCKS)
        mults, base = config.get("channel_mults", [1]), config.get("base_channels", 1)
        attention = config.get("attention_levels", [])
        if not isinstance(attention, list) or len(attention) > MAX_LEVELS:
            raise DsdError(f"{path}: the model config's attention_levels must be a list of at most {MAX_LEVELS}")
        widths = [m * base if isinstance(m, int) and isinstance(base, int) else m for m in mults] \
            if isinstance(mults, list) else mults
    for name, (value, limit) in counts.items():
        if value is not None:  # absent: the config's default
            size_in_file(path, f"the model config's {name}", value, limit, low=0 if name == "num_res_blocks" else 1)
    if not isinstance(widths, list) or not 1 <= len(widths) <= MAX_LEVELS:
        raise DsdError(f"{path}: the model config must list 1 to {MAX_LEVELS} resolutions")
    for width in widths:
        size_in_file(path, "a layer width (channels) of the model config", width, MAX_WIDTH)
    check_model_info(meta, path)


def check_model_info(meta: dict, path: str | Path) -> None:
    """What a model's metadata (or a diffusers pipeline's dsd.json) says beside its network, of the type each
    reader expects: distilled_steps becomes a default step count, guidance a default scale, provenance a
    mapping of names."""
    steps, guidance = meta.get("distilled_steps"), meta.get("guidance")
    if steps is not None:
        size_in_file(path, "distilled_steps", steps, MAX_TIMESTEPS)
    if guidance is not None and (isinstance(guidance, bool) or not isinstance(guidance, (int, float))
                                 or not 0 <= guidance < math.inf):
        raise DsdError(f"{path}: guidance must be a finite number ≥ 0, got {str(guidance)[:40]!r}")
    if not isinstance(meta.get("provenance", {}), dict):
        raise DsdError(f"{path}: provenance must be a JSON object, not {json_type(meta['provenance'])}")


def build_model(meta: dict, path: str | Path = "checkpoint", device: str | torch.device | None = None) -> nn.Module:
    """The network a model's metadata describes, untrained; on `device` "meta" it costs no memory (shapes only)."""
    with torch.device(device) if device is not None else contextlib.nullcontext():
        if meta.get("model_type") == "diffusers-unet2d":  # a distilled diffusers model (needs diffusers)
            from .models.diffusers_unet import DiffusersUNet

            return DiffusersUNet.from_config(meta["model_config"])
        if meta.get("model_type") != "unet":
            raise DsdError(f"{path}: unsupported model type {meta.get('model_type')!r}")
        return UNet(UNetConfig.from_dict(meta["model_config"], f"{path}: model_config"))


def check_weights(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Exactly the expected tensors, with the expected shapes, of a float type (int8 weights would be cast to
    floats without a word), with finite values (`check_finite`); else a one-line error naming the tensor.
    `expected` may live on the meta device."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DsdError(f"{path}: weights do not match the model config (missing {missing[:3]}, "
                       f"unexpected {unexpected[:3]})")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise DsdError(f"{path}: tensor {k} has shape {tuple(v.shape)}, "
                           f"the config expects {tuple(expected[k].shape)}")
        if v.dtype.is_floating_point != expected[k].dtype.is_floating_point:
            raise DsdError(f"{path}: tensor {k} holds {str(v.dtype).removeprefix('torch.')} values, the model "
                           f"needs {str(expected[k].dtype).removeprefix('torch.')}; dsd loads unquantised weights only")
    check_finite(state, path)


def check_finite(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """NaN or infinite weights sample NaN images: a one-line error at load, naming the tensor."""
    for k, v in state.items():
        if v.dtype.is_floating_point and not bool(torch.isfinite(v).all()):
            raise DsdError(f"{path}: tensor {k} holds NaN or infinite values; the model is broken (a diverged "
                           "run?): use an earlier checkpoint")


def load_state_dict(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load exactly the expected tensors with the expected shapes, or say what does not fit (`check_weights`)."""
    check_weights(module.state_dict(), state, path)
    module.load_state_dict(state)


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model checkpoint (or a built-in by name, a diffusers folder or hub id) ready for sampling."""
    from . import diffusers_io

    path = resolve_model_path(name_or_path)
    if path.is_dir() or diffusers_io.looks_like_hub_id(str(name_or_path)):
        loaded = diffusers_io.load_diffusers(name_or_path, device)
        check_finite(loaded.model.state_dict(), name_or_path)
        return loaded
    looks_like_a_name = "/" not in str(name_or_path) and not path.suffix
    if not path.exists() and looks_like_a_name:
        raise DsdError(f"unknown model {name_or_path!r}: not a built-in ({', '.join(available_builtins())}) nor a file")
    tensors, meta = load_tensors(path, device)
    if meta.get("kind") != "model":
        raise DsdError(f"{path} is a dsd {meta.get('kind', 'unknown')} file, not a model checkpoint")
    check_sizes(meta, path)
    state = unprefixed("model", tensors)
    try:
        with fields_of(path):  # the schedule's own checks, naming the file
            schedule = NoiseSchedule.from_dict(meta["schedule"])
        prediction = check_prediction(meta["prediction"])
        # built first without memory: the weights of the file must fit it before the real one is allocated, so a
        # config that claims more than the file holds costs nothing
        check_weights(build_model(meta, path, "meta").state_dict(), state, path)
        model = build_model(meta, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise DsdError(f"{path}: incomplete or invalid model metadata ({exc})") from None
    model.load_state_dict(state)
    return LoadedModel(model.to(device).eval(), schedule, prediction, meta)


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state as flat tensors plus JSON (param groups and scalar entries)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    # JSON turned tuples (Adam's betas) into lists; give them back their type
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
              for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def learner_state(model: nn.Module, ema, opt: torch.optim.Optimizer, gen: torch.Generator) -> tuple[dict, dict]:
    """What every resumable loop checkpoints: weights, EMA, optimizer and its random generator."""
    opt_tensors, opt_meta = optimizer_state(opt)
    tensors = {
        **prefixed("model", model.state_dict()),
        **prefixed("ema", ema.shadow.state_dict()),
        **prefixed("optim", opt_tensors),
        "rng.generator": gen.get_state(),
    }
    return tensors, {"optimizer": opt_meta, "ema_updates": ema.num_updates}


def read_state(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], dict] | None:
    """A resumable state file of the given kind; None if there is none yet."""
    if not path.exists():
        return None
    tensors, meta = load_tensors(path)
    if meta.get("kind") != kind:
        raise DsdError(f"{path} is not a {kind} file")
    return tensors, meta


def restore_learner_state(tensors: dict, meta: dict, model: nn.Module, ema, opt: torch.optim.Optimizer,
                          gen: torch.Generator, path: Path) -> None:
    """The inverse of `learner_state`."""
    load_state_dict(model, unprefixed("model", tensors), path)
    load_state_dict(ema.shadow, unprefixed("ema", tensors), path)
    restore_optimizer(opt, unprefixed("optim", tensors), meta["optimizer"])
    gen.set_state(tensors["rng.generator"])
    ema.num_updates = meta["ema_updates"]
