"""The defaults every front end shows, in one torch-free place: `dsd distill`'s options (`DistillConfig`), the
terminal app's setup form and the README's command table all read them from here, so they cannot disagree."""

from __future__ import annotations

# `dsd distill` and the terminal app's form: the shipped v-prediction model, DSD with a teacher frozen per stage
# (dsd-stage: the variant whose quality does not fall with more updates, where DSD's EMA teacher drifts), the
# iterative scheduler from the 32-step grid to 8 steps (two halvings), 2,000 updates per stage: the stage teacher
# converges more slowly than the EMA teacher (at 1,000 per stage its 8-step FD is 5.82 where 2,000 give 4.44),
# but it keeps improving where the EMA teacher collapses (docs/benchmarks.md, "DSD without drift").
DISTILL_MODEL = "digits-v"
DISTILL_METHOD = "dsd-stage"
DISTILL_SCHEDULE = "iterative"
DISTILL_FROM = 32
DISTILL_TO = 8
DISTILL_UPDATES = 4000
DISTILL_BATCH = 64
DISTILL_LR = 3e-5
DISTILL_TEACHER_FIRST = "auto"  # dsd-stage to 2 steps: the last stage teacher-first (no drift, docs/benchmarks.md)
DISTILL_LR_DECAY = "constant"  # cosine per stage measured the same at 1× to 4× the budget (docs/benchmarks.md)
DISTILL_SEED = 0
DISTILL_STOP_WHEN_WORSE = 0  # off: the agreement's best ends stages too early for FD (docs/benchmarks.md)

# `dsd sample` without --model and --steps: the best shipped few-step model, at its own step count.
SAMPLE_STEPS = 8


def run_folder_name(method: str, schedule: str, n_from: int, n_to: int, stamp: str | None = None) -> str:
    """A new distillation's folder under runs/ when none is named: what it does and when it started."""
    import time

    return f"{method}-{schedule}-{n_from}to{n_to}-{stamp or time.strftime('%Y%m%d-%H%M%S')}"
