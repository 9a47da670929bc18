"""The distillation methods one engine runs, and which update each stage of a run uses. No torch here: the
terminal app offers and checks these before it starts a run."""

from __future__ import annotations

from ..errors import DsdError

METHODS = ("dsd", "tsd", "pd", "dsd+pd")
NFE_PER_SAMPLE = {"dsd": 2, "pd": 3}  # network evaluations per trajectory (DSD, TSD) or image (PD) and update


def stage_methods(method: str, n_stages: int, pd_stages: int = 0) -> list[str]:
    """Which update ("dsd" or "pd") each stage uses; TSD is the DSD update with another teacher."""
    if method in ("dsd", "tsd"):
        return ["dsd"] * n_stages
    if method == "pd":
        return ["pd"] * n_stages
    n_pd = pd_stages or n_stages // 2
    if n_stages < 2:
        raise DsdError(f"dsd+pd needs a DSD stage and a PD stage, but the schedule has {n_stages} stage: "
                       "use --schedule iterative with --from at least 4·--to")
    if not 1 <= n_pd < n_stages:
        raise DsdError(f"--pd-stages {n_pd} leaves no DSD stage among the schedule's {n_stages}")
    return ["dsd"] * (n_stages - n_pd) + ["pd"] * n_pd
