"""TSD: the DSD update with a frozen copy of the starting model as teacher."""

from __future__ import annotations

import copy
from collections.abc import Callable

from .dsd import DsdUpdate


class TsdUpdate(DsdUpdate):
    def __init__(self, run):
        super().__init__(run)
        self.frozen_base = copy.deepcopy(run.model).eval().requires_grad_(False)

    def teacher(self) -> Callable:
        return self.frozen_base
