"""The settings of a distillation run, checked field by field (each on its own when they are made, the step
counts against the schedule once the model is loaded), and where PD's training data come from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from .. import defaults
from ..accel import check_amp
from ..checkpoint import LoadedModel
from ..checks import at_least, below_one, check_guidance_scale, check_seed, positive
from ..errors import OptionError
from ..limits import MAX_BATCH, at_most, check_batch
from .dsd import WEIGHTS
from .methods import METHODS, stage_methods
from .stepping import Stage, build_stages

# model.safetensors: the snapshot that agreed best with the starting model, the last, or by method (auto): best
# for the EMA-taught methods, which drift with budget; last for those with a frozen teacher (TSD, PD and
# dsd-stage), whose FD keeps improving while their agreement levels off or falls (docs/benchmarks.md, "Drift,
# seen by the run itself" and "DSD without drift": within a stage, agreement and FD are anti-correlated).
KEEP = ("auto", "best", "last")
KEEP_BEST_FOR = ("dsd", "dsd-anchor")
LR_DECAYS = ("constant", "cosine")
TEACHER_FIRST = ("auto", "off", "last", "all")  # DSD stages whose teacher takes the first half-step too
MIN_FD_SAMPLES = 100


def teacher_first_rule(value: str | bool, method: str, n_to: int) -> str:
    """`teacher_first` as a run applies it (off, last or all): a bool is the one dsd version's flag; auto is the
    last stage for dsd-stage distilling to 2 steps or fewer, where it ends the drift of the long last pair
    (docs/benchmarks.md); off for 4 steps and more, where the student's own first step converges faster and did
    not drift, and for the other methods, which keep their update."""
    if isinstance(value, bool):
        return "all" if value else "off"
    if value == "auto":
        return "last" if method == "dsd-stage" and n_to <= 2 else "off"
    return value


@dataclass
class DistillConfig:
    # runs written before `teacher_first` existed took the student's first step in every stage
    FILE_DEFAULTS: ClassVar[dict[str, object]] = {"teacher_first": "off"}

    method: str = defaults.DISTILL_METHOD
    schedule: str = defaults.DISTILL_SCHEDULE
    n_from: int = defaults.DISTILL_FROM
    n_to: int = defaults.DISTILL_TO
    updates: int = defaults.DISTILL_UPDATES
    batch: int = defaults.DISTILL_BATCH
    lr: float = defaults.DISTILL_LR
    pd_lr: float = 1e-4
    lr_decay: str = defaults.DISTILL_LR_DECAY  # constant, or cosine to zero over each stage
    pd_stages: int = 0
    data: str = ""
    weight: str = "authors"
    ema_decay: float = 0.999
    ema_teacher: bool = True
    lockstep: bool = False
    teacher_chunks: int = 1  # DSD/TSD teacher on slices of the batch: lower peak memory, more time
    # DSD stages whose teacher takes the first half-step too (3 NFE): auto (last for dsd-stage to ≤ 2 steps, else
    # off), off, last or all (a bool in older runs)
    teacher_first: str | bool = defaults.DISTILL_TEACHER_FIRST
    grad_clip: float = 1.0
    clip_x0: bool = True
    seed: int = defaults.DISTILL_SEED
    sample_every: int = 500
    checkpoint_every: int = 250
    histogram_every: int = 50
    guidance: float = 1.0  # classifier-free guidance w of a conditional model (1: plain conditional)
    amp: str = "off"  # off, bf16 or fp16: autocast of the network calls
    compile: bool = False  # torch.compile the network
    quality_every: int = 250  # updates between agreement checks (distill/agreement.py); 0: none
    quality_num: int = 64  # fixed noises of the agreement check
    quality_fd: int = 0  # samples scored by the digits classifier (FD, precision, recall) at each check; 0: none
    keep: str = "auto"  # which model becomes model.safetensors: best (by agreement), last, or by method
    stop_when_worse: int = defaults.DISTILL_STOP_WHEN_WORSE  # checks without a new best that end a stage; 0: never
    anchor_share: float = 0.25  # dsd-anchor: anchored samples per update, as a share of the batch
    anchor_cache: int = 512  # dsd-anchor: cached trajectories of the starting model

    @property
    def keeps_best(self) -> bool:
        return self.keep == "best" or (self.keep == "auto" and self.method in KEEP_BEST_FOR)

    @property
    def patience(self) -> int:
        """Agreement checks without a new best after which a stage ends (0: stages run their full budget).
        Only a run that keeps its best snapshots, and checks agreement at all, ends stages early; its next stage
        then starts from the stage's best snapshot, so a larger budget cannot lose the best agreement found."""
        return self.stop_when_worse if self.keeps_best and self.quality_every else 0

    def __post_init__(self) -> None:
        check_amp(self.amp)
        if self.method not in METHODS:
            raise OptionError("unknown method {value!r}; choose one of {names}", "method", value=self.method,
                              names=", ".join(METHODS))
        if self.weight not in WEIGHTS:
            raise OptionError("unknown loss weight {value!r}; choose one of {names}", "weight", value=self.weight,
                              names=", ".join(WEIGHTS))
        at_least(1, batch=self.batch, sample_every=self.sample_every, checkpoint_every=self.checkpoint_every,
                 histogram_every=self.histogram_every, teacher_chunks=self.teacher_chunks)
        at_most(MAX_BATCH, "images per batch", batch=self.batch, quality_num=self.quality_num,
                quality_fd=self.quality_fd, anchor_cache=self.anchor_cache)
        check_seed(seed=self.seed)
        positive(grad_clip=self.grad_clip)
        at_least(0, quality_every=self.quality_every, stop_when_worse=self.stop_when_worse,
                 quality_fd=self.quality_fd)
        if self.quality_fd and not self.quality_every:
            raise OptionError("{quality_fd} scores samples at each agreement check: it needs {quality_every} above 0")
        if 0 < self.quality_fd < MIN_FD_SAMPLES:
            raise OptionError("{quality_fd} {n} is too few samples for FD; use at least {least}", n=self.quality_fd,
                              least=MIN_FD_SAMPLES)
        at_least(1, quality_num=self.quality_num, anchor_cache=self.anchor_cache)
        positive(anchor_share=self.anchor_share)
        if self.keep not in KEEP:
            raise OptionError("unknown choice {value!r}; choose one of {names}", "keep", value=self.keep,
                              names=", ".join(KEEP))
        positive(lr=self.lr, pd_lr=self.pd_lr)
        if self.lr_decay not in LR_DECAYS:
            raise OptionError("unknown choice {value!r}; choose one of {names}", "lr_decay", value=self.lr_decay,
                              names=", ".join(LR_DECAYS))
        if isinstance(self.teacher_first, bool):  # a run of the one dsd version where it was a flag
            self.teacher_first = teacher_first_rule(self.teacher_first, self.method, self.n_to)
        if self.teacher_first not in TEACHER_FIRST:
            raise OptionError("unknown choice {value!r}; choose one of {names}", "teacher_first",
                              value=self.teacher_first, names=", ".join(TEACHER_FIRST))
        at_least(0, pd_stages=self.pd_stages)
        below_one(ema_decay=self.ema_decay)
        check_guidance_scale(self.guidance)

    @property
    def first_rule(self) -> str:
        """`teacher_first` with auto resolved (`teacher_first_rule`)."""
        return teacher_first_rule(self.teacher_first, self.method, self.n_to)

    def teacher_first_in(self, stage: Stage) -> bool:
        """Whether the teacher takes the first half-step of this stage's DSD pairs: in every stage, or only in
        the last, whose long low-noise pair ties the image to its noise most weakly (docs/benchmarks.md)."""
        rule = self.first_rule
        return rule == "all" or (rule == "last" and stage.target_steps == self.n_to)

    def check_batches(self, image_values: int) -> None:
        """The noise the run's batches hold for a model of `image_values` (C × H × W) numbers per image: its
        batch, the agreement check's noises and dsd-anchor's cache, each one network call."""
        check_batch(self.batch, image_values)
        check_batch(self.quality_num, image_values, "quality_num")
        if self.method == "dsd-anchor":
            check_batch(self.anchor_cache, image_values, "anchor_cache")

    def stages(self, num_timesteps: int = 1000) -> list[Stage]:
        """The schedule's stages for a model of `num_timesteps`, after the checks of the step counts and the
        method's stages, which name the field to fix (`n_from`, `n_to`, `updates`, `pd_stages`, …). Not in
        `__post_init__`: a run first reports a model that cannot load, then the steps it cannot take."""
        stages = build_stages(self.schedule, self.n_from, self.n_to, self.updates, num_timesteps)
        stage_methods(self.method, len(stages), self.pd_stages)
        return stages


def training_data_spec(requested: str, base: LoadedModel) -> str:
    """PD's data: what the user named, else the data the base model's checkpoint says it was trained on."""
    if requested:
        return requested
    named = base.meta.get("provenance", {}).get("data", "")
    if named in ("digits", "digits:train"):
        return "digits"
    if named and Path(named).is_dir():
        return named
    raise OptionError("PD trains on the model's training data, which its checkpoint does not name: pass {data} "
                      "(digits or an image folder)")
