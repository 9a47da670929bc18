"""The update object of each distillation method, by name. A new method is one module here, registered in
`UPDATES`, with its name in `methods.METHODS` (the torch-free list front ends offer)."""

from __future__ import annotations

from ..methods import stage_methods
from .anchored import AnchoredDsdUpdate
from .base import MethodUpdate, UpdateBatch
from .dsd import DsdUpdate
from .pd import PdUpdate
from .stage_teacher import StageTeacherUpdate
from .tsd import TsdUpdate

UPDATES: dict[str, type[MethodUpdate]] = {"dsd": DsdUpdate, "tsd": TsdUpdate, "pd": PdUpdate,
                                          "dsd-anchor": AnchoredDsdUpdate, "dsd-stage": StageTeacherUpdate}

__all__ = ["UPDATES", "MethodUpdate", "UpdateBatch", "stage_plan"]


def stage_plan(method: str, n_stages: int, pd_stages: int = 0) -> list[str]:
    """The update each stage runs: a registered method for all stages, or a combined plan such as dsd+pd."""
    return [method] * n_stages if method in UPDATES else stage_methods(method, n_stages, pd_stages)
