"""What the setup form offers (models, methods, step schedules), asked of the engine in a subprocess.

The engine's lists live in torch-importing modules; reading them in a child process keeps torch (seconds
to import) out of the app. Until the answer comes, the form offers `FALLBACK`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass

METHOD_LABELS = {"dsd": "DSD", "tsd": "TSD", "pd": "PD", "dsd+pd": "DSD+PD"}

_QUERY = """
import json
from dsd_core.checkpoint import available_builtins
from dsd_core.distill.runner import METHODS
from dsd_core.distill.stepping import SCHEDULES
print(json.dumps({"models": available_builtins(), "methods": list(METHODS), "schedules": list(SCHEDULES)}))
"""


@dataclass(frozen=True)
class Catalog:
    models: tuple[str, ...]
    methods: tuple[str, ...]
    schedules: tuple[str, ...]
    loaded: bool = True


FALLBACK = Catalog(models=("digits",), methods=("dsd",),
                   schedules=("iterative", "naive", "gradual-linear", "gradual-exp"), loaded=False)


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method.upper())


async def load_catalog(timeout: float = 60.0) -> Catalog:
    """The engine's own lists; FALLBACK if the engine cannot be asked."""
    try:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _QUERY, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        data = json.loads(out.decode().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, asyncio.TimeoutError):
        return FALLBACK
    schedules = list(data["schedules"])
    if "iterative" in schedules:  # the form's default first
        schedules.insert(0, schedules.pop(schedules.index("iterative")))
    return Catalog(tuple(data["models"]), tuple(data["methods"]), tuple(schedules))
