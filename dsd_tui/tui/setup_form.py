"""The setup form's values checked field by field (inline errors), and the `dsd distill` command they make.

The checks mirror the CLI's so that most mistakes are caught as they are typed; whatever slips through, the
run's own `error: …` line reports in the run screen.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from dsd_core import defaults
from dsd_core.errors import render

from .process import dsd_argv

CHECKPOINT = "checkpoint"  # the model choice that reads the path field
CROSS_CHECKED = ("n_from", "n_to", "updates", "schedule")  # fields the step-count rules read together
# The form's label of each field; the engine's messages name settings by field (`OptionError`) and the app says
# them with these labels (a setting without a field here: its name with spaces).
LABELS = {"model": "model", "path": "checkpoint", "method": "method", "schedule": "schedule", "n_from": "from steps",
          "n_to": "to steps", "updates": "updates", "batch": "batch", "lr": "lr", "seed": "seed", "threads": "threads"}


def label(field: str) -> str:
    return LABELS.get(field, field.replace("_", " "))


def app_text(message: object) -> str:
    """An engine error or warning as the app says it: settings named by their labels (`to steps`, not `--to`)."""
    return render(message, label)


def short_float(value: float) -> str:
    """`3e-5` where Python writes `3e-05`: the number as people type it, read back as the same float."""
    mantissa, e, exponent = repr(float(value)).partition("e")
    return f"{mantissa}e{int(exponent)}" if e else mantissa


DEFAULTS = {"model": defaults.DISTILL_MODEL, "path": "", "method": defaults.DISTILL_METHOD,
            "schedule": defaults.DISTILL_SCHEDULE, "n_from": str(defaults.DISTILL_FROM),
            "n_to": str(defaults.DISTILL_TO), "updates": str(defaults.DISTILL_UPDATES),
            "batch": str(defaults.DISTILL_BATCH), "lr": short_float(defaults.DISTILL_LR),
            "seed": str(defaults.DISTILL_SEED), "threads": "1"}


@dataclass(frozen=True)
class DistillRequest:
    model: str
    method: str
    schedule: str
    n_from: int
    n_to: int
    updates: int
    batch: int
    lr: float
    seed: int
    threads: int

    @property
    def sample_every(self) -> int:
        """About 25 previews (and checkpoints, so a stop loses little) per run: the previews visibly sharpen
        without slowing the run."""
        return max(10, self.updates // 25)

    def default_run_dir(self, runs_root: Path) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return runs_root / f"{self.method}-{self.schedule}-{self.n_from}to{self.n_to}-{stamp}"

    def argv(self, run_dir: Path) -> list[str]:
        return dsd_argv("distill", "--model", self.model, "--method", self.method, "--schedule", self.schedule,
                        "--from", str(self.n_from), "--to", str(self.n_to), "--updates", str(self.updates),
                        "--batch", str(self.batch), "--lr", short_float(self.lr), "--seed", str(self.seed),
                        "--sample-every", str(self.sample_every), "--checkpoint-every", str(self.sample_every),
                        "--run-dir", str(run_dir),
                        "--threads", str(self.threads))


@dataclass(frozen=True)
class SampleRequest:
    """The form's model to sample before distilling it (Ctrl+G): its file, the folder its ONNX exports and saved
    grids go to, and the step count exported first (a shipped `-dsdN` model's N, else `defaults.SAMPLE_STEPS`)."""

    model: Path
    out_dir: Path
    steps: int


def sample_request(values: dict[str, str], models: tuple[str, ...],
                   runs_root: Path) -> tuple[SampleRequest | None, dict[str, str]]:
    """What to export and sample for the form's model, or the error of its field (keyed like `values`)."""
    model = values.get("model", "")
    if model == CHECKPOINT:
        text = values.get("path", "").strip()
        path = Path(text).expanduser()
        if not text:
            return None, {"path": "give a checkpoint file to sample"}
        if not path.is_file():
            return None, {"path": f"{path} is not a checkpoint file (sampling needs a .safetensors file)"}
        name = path.stem
    elif model in models:
        from dsd_core.builtins import builtin_path

        path, name = builtin_path(model), model
    else:
        return None, {"model": "choose a model"}
    distilled = re.search(r"-dsd(\d+)$", name)
    steps = int(distilled.group(1)) if distilled else defaults.SAMPLE_STEPS
    return SampleRequest(path, Path(runs_root) / "samplers" / name, steps), {}


def resume_argv(run_dir: Path) -> list[str]:
    """No --threads: the run resumes with the thread count it recorded, so it still ends bit-identical."""
    return dsd_argv("distill", "--resume", str(run_dir))


def _int(text: str, name: str, low: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{name} must be a whole number") from None
    if value < low:
        raise ValueError(f"{name} must be at least {low}")
    return value


def check(values: dict[str, str], methods: tuple[str, ...], schedules: tuple[str, ...],
          models: tuple[str, ...]) -> tuple[DistillRequest | None, dict[str, str]]:
    """A request, or the error of each bad field (keyed like `values`)."""
    errors: dict[str, str] = {}
    parsed: dict[str, object] = {}

    def field(key: str, parse) -> None:
        try:
            parsed[key] = parse(values.get(key, ""))
        except ValueError as exc:
            errors[key] = str(exc)

    model = values.get("model", "")
    if model == CHECKPOINT:
        path = Path(values.get("path", "").strip()).expanduser()
        if not str(values.get("path", "")).strip():
            errors["path"] = "give a checkpoint file or a diffusers folder"
        elif not path.exists():
            errors["path"] = f"{path} does not exist"
        parsed["model"] = str(path)
    elif model not in models:
        errors["model"] = "choose a model"
    else:
        parsed["model"] = model
    if values.get("method") not in methods:
        errors["method"] = f"choose one of {', '.join(methods)}"
    if values.get("schedule") not in schedules:
        errors["schedule"] = f"choose one of {', '.join(schedules)}"
    field("n_from", lambda s: _int(s, "from", 2))
    field("n_to", lambda s: _int(s, "to", 1))
    field("updates", lambda s: _int(s, "updates", 1))
    field("batch", lambda s: _int(s, "batch", 1))
    field("seed", lambda s: _int(s, "seed", 0))
    field("threads", lambda s: _int(s, "threads", 1))
    field("lr", _lr)
    if "n_from" in parsed and "n_to" in parsed and "updates" in parsed and "schedule" not in errors:
        problem = _steps_problem(values["schedule"], parsed["n_from"], parsed["n_to"], parsed["updates"])
        if problem:
            errors[problem[0]] = problem[1]
    if errors:
        return None, errors
    return DistillRequest(method=values["method"], schedule=values["schedule"], **parsed), {}


def _lr(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError("lr must be a number, e.g. 3e-5") from None
    if not 0 < value < 1:
        raise ValueError("lr must be between 0 and 1")
    return value


def _steps_problem(schedule: str, n_from: int, n_to: int, updates: int) -> tuple[str, str] | None:
    """(field, message) when the step counts do not fit the schedule: the engine's own rules."""
    from dsd_core.distill.stepping import StepsError, build_stages

    try:
        build_stages(schedule, n_from, n_to, updates)
    except StepsError as exc:
        return exc.field, app_text(exc)
    return None
