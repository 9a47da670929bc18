"""diffusers interop: load a `UNet2DModel` folder, a `DDPMPipeline`/`DDIMPipeline` folder or a hub id as a dsd
model, and write a distilled model back as a pipeline folder that diffusers samples with
`DDIMScheduler(timestep_spacing="trailing")` at the distilled step count.

The scheduler config (β schedule, prediction type) comes from the pipeline's `scheduler/` folder; a bare UNet
folder gets diffusers' DDPM defaults (linear β 1e-4 … 0.02, ε). diffusers is optional and imported lazily.

Only diffusers models are written back. The built-in UNet maps onto a `UNet2DModel` block for block (time
embedding, ResBlocks, single-head attention, resampling) except in its middle: ResBlock, attention, ResBlock,
attention, where diffusers' `UNetMidBlock2D` has one attention between its two ResBlocks and no setting for a
second. No UNet2DModel computes the built-in models' function, so they leave as dsd checkpoints or ONNX.

A load prints nothing of diffusers' own (its logging, progress bars and Python warnings are silenced for the
load only, `quiet`): dsd says in one line what went wrong, and a UNet whose weights do not all fit its config
(left over, missing, or of another shape) is refused, not loaded half random.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open

from .errors import DsdError, OptionError
from .limits import MAX_TIMESTEPS, size_in_file
from .models.diffusers_unet import DiffusersUNet, check_unet2d_config, import_diffusers
from .schedule import NoiseSchedule

PREDICTION_FROM_DIFFUSERS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
PREDICTION_TO_DIFFUSERS = {v: k for k, v in PREDICTION_FROM_DIFFUSERS.items()}
SCHEDULE_FROM_DIFFUSERS = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}


def unet_folder(path: Path) -> Path | None:
    """The folder holding the UNet2DModel's config.json: `path` itself or its `unet/`; None if neither."""
    for folder in (path, path / "unet"):
        config = folder / "config.json"
        if config.is_file():
            try:
                name = json.loads(config.read_text()).get("_class_name")
            except (json.JSONDecodeError, AttributeError):
                raise DsdError(f"{config} is not a readable diffusers config") from None
            if name != "UNet2DModel":
                raise DsdError(f"{folder} holds a {name}; dsd supports pixel-space UNet2DModel models")
            return folder
    return None


def looks_like_hub_id(spec: str) -> bool:
    """`owner/name` with no file suffix, and nothing of that name on disk."""
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not Path(spec).exists() and not Path(spec).suffix


def schedule_from_config(config: dict, where: object) -> tuple[NoiseSchedule, str]:
    """dsd's schedule and prediction type from a diffusers scheduler config (`where`: the file, for messages),
    each value checked before the schedule's table is allocated."""
    kind = config.get("beta_schedule", "linear")
    if kind not in SCHEDULE_FROM_DIFFUSERS or config.get("trained_betas") is not None:
        raise DsdError(f"{where}: β schedule {kind!r} is not supported (linear, scaled_linear, squaredcos_cap_v2)")
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_FROM_DIFFUSERS:
        raise DsdError(f"{where}: prediction type {prediction!r} is not supported (epsilon, v_prediction, sample)")
    steps = size_in_file(where, "num_train_timesteps", config.get("num_train_timesteps", 1000), MAX_TIMESTEPS)
    betas = {}
    if kind != "squaredcos_cap_v2":
        betas = {"beta_start": config.get("beta_start", 1e-4), "beta_end": config.get("beta_end", 0.02)}
    try:
        schedule = NoiseSchedule(SCHEDULE_FROM_DIFFUSERS[kind], steps, **betas)
    except DsdError as exc:
        raise DsdError(f"{where}: {exc}") from None
    return schedule, PREDICTION_FROM_DIFFUSERS[prediction]


def _read_json(path: Path) -> dict:
    """A JSON object from a model folder, or a one-line error naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DsdError(f"{path} is not readable JSON ({_one_line(exc)})") from None
    if not isinstance(data, dict):
        raise DsdError(f"{path} must hold a JSON object")
    return data


@contextlib.contextmanager
def quiet(diffusers) -> Iterator[None]:
    """diffusers' logging (errors only), its progress bars and all Python warnings off while diffusers works, then
    back as they were: a load otherwise prints 5–8 lines (no `accelerate`, weights not used, …) around dsd's own."""
    log = diffusers.utils.logging
    verbosity, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.set_verbosity(verbosity)
        if bars:
            log.enable_progress_bar()


def load_unet(diffusers, folder: Path):
    """The UNet2DModel of `folder`, quietly, every weight of its file in place: a config.json whose blocks do not
    match the weights (another block type, width or depth) is one line saying which weights do not fit."""
    try:
        with quiet(diffusers):
            unet, info = diffusers.UNet2DModel.from_pretrained(str(folder), output_loading_info=True)
    except Exception as exc:  # noqa: BLE001 - diffusers raises OSError, ValueError, RuntimeError (shapes) …
        raise DsdError(f"{folder}: diffusers could not load the UNet: {_one_line(exc)}") from None
    check_loaded(folder, info)
    return unet


def check_loaded(source: object, info: dict) -> None:
    """`check_fit` on what diffusers' loader reports (`output_loading_info`), which it would only have logged."""
    check_fit(source, unexpected=sorted(info.get("unexpected_keys") or []),
              missing=sorted(info.get("missing_keys") or []),
              differ=[_differ(k, a, b) for k, a, b in info.get("mismatched_keys") or []])


def _differ(key: str, in_file: object, in_unet: object) -> str:
    return f"{key} is {tuple(in_file)} in the file but {tuple(in_unet)} in the UNet"


def check_fit(folder: object, unexpected: list[str] = (), missing: list[str] = (), differ: list[str] = ()) -> None:
    """One line for weights that do not fit the UNet of config.json: how many, of each kind, with the first."""
    misfits = [f"{len(keys)} {what}, e.g. {keys[0]}" for what, keys in (
        ("weights of the file have no place in it", unexpected), ("of its weights are missing from the file", missing),
        ("weights differ in shape", differ)) if keys]
    if misfits:
        raise DsdError(f"{folder}: the UNet of config.json does not fit its weights file: {'; '.join(misfits)}; "
                       "not loaded")


def load_diffusers(spec: str | Path, device: str | torch.device = "cpu"):
    """A diffusers UNet (folder or hub id) as a `LoadedModel`; `meta.provenance.source` says where from. Every
    config is checked before the network is built."""
    from .checkpoint import LoadedModel, check_model_info

    diffusers = import_diffusers()
    path = Path(spec)
    if path.is_dir():
        folder = unet_folder(path)
        if folder is None:
            raise DsdError(f"{path} is a folder but not a diffusers model (no config.json or unet/config.json)")
        sched_file = path / "scheduler" / "scheduler_config.json"
        sched_config = _read_json(sched_file) if folder != path and sched_file.is_file() else {}
        schedule, prediction = schedule_from_config(sched_config, sched_file if sched_config else spec)
        check_unet2d_config(_read_json(folder / "config.json"), folder / "config.json")
        check_weights_fit(diffusers, folder)
        unet = load_unet(diffusers, folder)
    else:
        unet, sched_config = _from_hub(diffusers, str(spec))
        schedule, prediction = schedule_from_config(sched_config, spec)
    model = DiffusersUNet(unet.float())
    meta = {"kind": "model", "model_type": model.model_type, "distilled_steps": None,
            "provenance": {"source": str(spec), "format": "diffusers"}}
    written = path / "dsd.json" if path.is_dir() else None  # a pipeline dsd wrote: its step count and history
    if written is not None and written.is_file():
        info = _read_json(written)
        check_model_info(info, written)
        meta.update(distilled_steps=info.get("distilled_steps"), provenance={**info.get("provenance", {}),
                                                                             **meta["provenance"]})
    return LoadedModel(model.to(device).eval(), schedule, prediction, meta)


def check_weights_fit(diffusers, folder: Path) -> None:
    """The UNet of `folder`'s config.json, built on torch's meta device (no memory), may hold no more weights
    than its safetensors file does: without accelerate, diffusers allocates the whole network before it reads
    a weight, so a config within every limit could still claim gigabytes its file does not back. (Counted, not
    matched by name: diffusers renames old checkpoints' keys as it loads them.) Then the weights named alike in
    the file and the UNet must have one shape: diffusers' own error would name every one of them."""
    held, shapes = 0, {}
    try:
        for file in sorted(folder.glob("diffusion_pytorch_model*.safetensors")):  # the weights, or variants
            with safe_open(str(file), framework="pt") as f:
                in_file = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            held = max(held, sum(map(math.prod, in_file.values())))
            if file.name == "diffusion_pytorch_model.safetensors":  # the one diffusers loads
                shapes = in_file
    except Exception:  # noqa: BLE001 - a torn file: diffusers' own loader says what is wrong with it
        return
    if not held:
        return
    config = {k: v for k, v in _read_json(folder / "config.json").items() if not k.startswith("_")}
    try:
        with torch.device("meta"), quiet(diffusers):
            unet = diffusers.UNet2DModel.from_config(config)
    except Exception as exc:  # noqa: BLE001 - diffusers checks its config with ValueError, TypeError …
        raise DsdError(f"{folder}: diffusers could not build the UNet of config.json: {_one_line(exc)}") from None
    claimed = sum(p.numel() for p in unet.parameters())
    if claimed > held:
        raise DsdError(f"{folder}: config.json describes a UNet of {claimed:,} weights but its weights file holds "
                       f"{held:,}; not loaded")
    wanted = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    check_fit(folder, differ=[_differ(k, shapes[k], wanted[k]) for k in sorted(shapes.keys() & wanted.keys())
                              if shapes[k] != wanted[k]])


def _from_hub(diffusers, hub_id: str):
    """UNet and scheduler config of a hub id, through diffusers' own loader (its cache, its offline rules). (Its
    config is diffusers' to read: checking it first would cost a second round trip to the hub.)"""
    errors = []
    for sub in ("unet", None):
        try:
            with quiet(diffusers):
                unet, info = diffusers.UNet2DModel.from_pretrained(hub_id, subfolder=sub, output_loading_info=True)
            break
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    else:
        raise DsdError(f"could not load {hub_id!r} from the Hugging Face hub or its cache (offline, or not a "
                       f"UNet2DModel?): {_one_line(errors[-1])}")
    check_loaded(hub_id, info)
    try:
        with quiet(diffusers):
            sched_config = dict(diffusers.DDIMScheduler.load_config(hub_id, subfolder="scheduler"))
    except Exception:  # noqa: BLE001 - a bare UNet repo has no scheduler: DDPM defaults
        sched_config = {}
    return unet, sched_config


def check_diffusers_model(loaded) -> None:
    """`save_diffusers` needs a model that came from diffusers (see the module's note on the built-in UNet);
    checked before a distillation starts, not after it."""
    if not isinstance(loaded.model, DiffusersUNet):
        raise OptionError("{save_format} diffusers needs a diffusers model ({model} a UNet2DModel or pipeline "
                          "folder); the built-in UNet has no UNet2DModel equivalent: use the dsd format or "
                          "dsd export --onnx")
    import_diffusers()


def check_pipeline_folder(out: str | Path, replace: bool = False) -> Path:
    """Where `save_diffusers` may write: a new or empty folder (an existing one only with `replace`), in an
    existing folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OptionError("{path} is a file; {save_format} diffusers writes a pipeline folder", path=out)
    if out.exists() and any(out.iterdir()) and not replace:
        raise OptionError("{path} already exists; pass {force} to replace it, or choose a new folder for the "
                          "pipeline", path=out)
    if not out.parent.is_dir():
        raise DsdError(f"output folder does not exist: {out.parent}")
    return out


def save_diffusers(loaded, out: str | Path, steps: int | None, replace: bool = False) -> Path:
    """Write a `DDIMPipeline` folder (unet/, scheduler/ with trailing spacing, model_index.json), atomically:
    built in a temporary sibling folder and renamed into place. With `replace`, an existing pipeline folder is
    swapped out only once the new one is complete."""
    check_diffusers_model(loaded)
    diffusers = import_diffusers()
    model = loaded.model
    out = check_pipeline_folder(out, replace)
    s = loaded.schedule
    beta_schedule = {v: k for k, v in SCHEDULE_FROM_DIFFUSERS.items()}[s.name]
    with quiet(diffusers):
        scheduler = diffusers.DDIMScheduler(
            num_train_timesteps=s.num_timesteps, beta_schedule=beta_schedule, beta_start=s.beta_start,
            beta_end=s.beta_end, prediction_type=PREDICTION_TO_DIFFUSERS[loaded.prediction],
            timestep_spacing="trailing", clip_sample=True, set_alpha_to_one=True)
        pipe = diffusers.DDIMPipeline(unet=model.unet, scheduler=scheduler)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with quiet(diffusers):
            pipe.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / "dsd.json").write_text(json.dumps({"distilled_steps": steps, "sample_with": {
            "scheduler": "DDIMScheduler", "timestep_spacing": "trailing", "num_inference_steps": steps, "eta": 0.0,
            "use_clipped_model_output": True}, "provenance": loaded.meta.get("provenance", {})}, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _swap_into_place(tmp, out)


def _swap_into_place(new: Path, out: Path) -> Path:
    """Rename the finished folder `new` to `out`; an existing `out` is moved aside first, put back if the
    rename fails, and deleted only after it worked."""
    aside = None
    try:
        if out.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent)) / out.name
            out.rename(aside)
        new.rename(out)
    except OSError as exc:
        if aside is not None and aside.exists() and not out.exists():
            aside.rename(out)
        if aside is not None and not aside.exists():
            shutil.rmtree(aside.parent, ignore_errors=True)
        shutil.rmtree(new, ignore_errors=True)
        raise DsdError(f"cannot write {out}: {exc.strerror or exc}") from None
    if aside is not None:
        shutil.rmtree(aside.parent, ignore_errors=True)
    return out


DETAILS = 3  # lines of a many-line diffusers error kept (a size mismatch names every weight), then a count


def _one_line(exc: Exception) -> str:
    """A library's error, however many lines, as one: its lines joined (their first DETAILS, then how many more),
    without diffusers' advice to pass options that dsd does not offer."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and "ignore_mismatched_sizes" not in ln]
    if not lines:
        return type(exc).__name__
    head, details = lines[0], lines[1:]
    more = f" … and {len(details) - DETAILS} more" if len(details) > DETAILS else ""
    return " ".join([head, "; ".join(details[:DETAILS])]).strip() + more
