"""The distillation methods one engine runs, which update each stage of a run uses, what an update costs and
when a run is too short for its EMA. No torch here: the terminal app offers and checks these before it starts
a run."""

from __future__ import annotations

from ..errors import OptionError, OptionWarning

METHODS = ("dsd-stage", "dsd", "tsd", "pd", "dsd+pd", "dsd-anchor")  # the default first, as front ends list it
NFE_PER_SAMPLE = {"dsd": 2, "pd": 3}  # network evaluations per trajectory (DSD, TSD) or image (PD) and update


def stage_methods(method: str, n_stages: int, pd_stages: int = 0) -> list[str]:
    """Which update ("dsd" or "pd") each stage uses; TSD is the DSD update with another teacher, anchored DSD
    the DSD update with anchored samples added, dsd-stage the DSD update with a teacher frozen per stage."""
    if method in ("dsd", "tsd", "dsd-anchor", "dsd-stage"):
        return ["dsd"] * n_stages
    if method == "pd":
        return ["pd"] * n_stages
    n_pd = pd_stages or n_stages // 2
    if n_stages < 2:
        raise OptionError("dsd+pd needs a DSD stage and a PD stage, but the schedule has {n} stage: use {schedule} "
                          "iterative with {n_from} at least 4·{n_to}", n=n_stages)
    if not 1 <= n_pd < n_stages:
        raise OptionError("{pd_stages} {n_pd} leaves no DSD stage among the schedule's {n}", n_pd=n_pd, n=n_stages)
    return ["dsd"] * (n_stages - n_pd) + ["pd"] * n_pd


def nfe_text(method: str, methods: list[str], guided_cost: int = 1, teacher_first: str = "off") -> str:
    """The network evaluations of an update for the methods a run actually uses, e.g. `DSD 2 NFE per
    trajectory and update`; `guided_cost` 2 when classifier-free guidance doubles the DSD update, one more per
    trajectory in the stages where the teacher takes the first half-step too (`teacher_first` last or all)."""
    parts = []
    if "dsd" in methods:
        guided = " with guidance" if guided_cost > 1 else ""
        name = {"tsd": "TSD", "dsd-anchor": "anchored DSD", "dsd-stage": "DSD (stage teacher)"}.get(method, "DSD")
        anchored = f" plus {guided_cost} per anchored sample" if method == "dsd-anchor" else ""
        nfe = NFE_PER_SAMPLE["dsd"] * guided_cost
        first = ", teacher first" if teacher_first == "all" else ""
        last = f" ({nfe + guided_cost} in the last stage, teacher first)" if teacher_first == "last" else ""
        parts.append(f"{name}{first} {nfe + guided_cost * (teacher_first == 'all')} NFE per trajectory and "
                     f"update{guided}{anchored}{last}")
    if "pd" in methods:
        parts.append(f"PD {NFE_PER_SAMPLE['pd']} NFE per image and update")
    return ", ".join(parts)


def ema_short_run_message(updates: int, ema_decay: float) -> OptionWarning | None:
    """The saved weights are the EMA, which starts at the undistilled model and, at a constant decay d, still
    holds d^updates of it at the end. A run shorter than one time constant 1/(1−d) saves a model that is more
    than a third (1/e) the undistilled one: say so before it starts."""
    if ema_decay <= 0 or updates * (1 - ema_decay) >= 1:
        return None
    share = ema_decay ** updates
    return OptionWarning("{n} updates are shorter than the EMA's time constant ({tau:.0f} updates at {ema_decay} "
                         "{d:g}): {percent:.0f} % of the saved weights stay the undistilled model's; use more "
                         "{updates} or a lower {ema_decay}", n=updates, tau=1 / (1 - ema_decay), d=ema_decay,
                         percent=100 * share)
