"""What the setup form offers (models, methods, step schedules): the engine's own lists.

They live in torch-free modules of the engine (`dsd_core.builtins`, `dsd_core.distill.methods`,
`dsd_core.distill.stepping`), so the app reads them directly and still never imports torch. Until they are
read, the form offers `FALLBACK`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsd_core import defaults

METHOD_LABELS = {"dsd": "DSD", "tsd": "TSD", "pd": "PD", "dsd+pd": "DSD+PD", "dsd-anchor": "DSD, anchored",
                 "dsd-stage": "DSD, stage teacher"}

@dataclass(frozen=True)
class Catalog:
    models: tuple[str, ...]
    methods: tuple[str, ...]
    schedules: tuple[str, ...]
    loaded: bool = True


# the form's default model comes first, so that the form keeps it when the engine's lists arrive
FALLBACK = Catalog(models=(defaults.DISTILL_MODEL,), methods=(defaults.DISTILL_METHOD,),
                   schedules=("iterative", "naive", "gradual-linear", "gradual-exp"), loaded=False)


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method.upper())


async def load_catalog() -> Catalog:
    """The engine's own lists, the form's default schedule first."""
    from dsd_core.builtins import available_builtins
    from dsd_core.distill.methods import METHODS
    from dsd_core.distill.stepping import SCHEDULES

    schedules = list(SCHEDULES)
    if "iterative" in schedules:
        schedules.insert(0, schedules.pop(schedules.index("iterative")))
    return Catalog(tuple(available_builtins()), METHODS, tuple(schedules))
