"""The samplers dsd offers and the solver order each step of a multistep walk uses. Plain Python, so the CLI
checks `--sampler` and the ONNX runtime reads a file's sampler without importing torch.

The orders follow diffusers' schedulers step for step (the parity tests in tests/test_solvers_diffusers.py hold
them to it): a multistep solver warms up (step i has only i + 1 model outputs), and the walk ends on clean data
(σ = 0, λ = +∞), where only the first-order step is finite, so the last step is always first order.
"""

from __future__ import annotations

from .errors import DsdError

SAMPLERS = ("ddim", "dpm++2m", "dpm++3m", "unipc")
DEFAULT_SAMPLER = "ddim"
ORDER = {"ddim": 1, "dpm++2m": 2, "dpm++3m": 3, "unipc": 2}
LABEL = {"ddim": "DDIM", "dpm++2m": "DPM-Solver++(2M)", "dpm++3m": "DPM-Solver++(3M)", "unipc": "UniPC (bh2)"}
FEW_STEPS = 15  # diffusers' `lower_order_final` acts below this many steps


def check_sampler(name: str | None) -> str:
    """A sampler name, the default for None; an unknown one is a one-line error."""
    if name is None:
        return DEFAULT_SAMPLER
    if name not in SAMPLERS:
        raise DsdError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return name


def dpm_orders(num_steps: int, order: int, lower_order_final: bool = True) -> list[int]:
    """DPM-Solver++'s order at each step, as DPMSolverMultistepScheduler picks it: at most i + 1 at step i,
    1 at the last step, and with `lower_order_final` below 15 steps at most 2 at the second-to-last (a
    third-order step that far out is unstable at few steps). So 3M at 2 steps is DDIM, and at 4 steps 2M."""
    orders = []
    for i in range(num_steps):
        k = min(order, i + 1)
        if i == num_steps - 1:
            k = 1
        elif lower_order_final and num_steps < FEW_STEPS and i == num_steps - 2:
            k = min(k, 2)
        orders.append(k)
    return orders


def unipc_orders(num_steps: int, order: int = 2) -> list[int]:
    """UniPC's predictor order at each step, as UniPCMultistepScheduler (lower_order_final) picks it:
    min(order, i + 1, N − i). The corrector at step i ≥ 1 has the order of the predictor of step i − 1."""
    return [min(order, i + 1, num_steps - i) for i in range(num_steps)]


def orders(sampler: str, num_steps: int) -> list[int]:
    """The order of each step of an N-step walk with `sampler` (DDIM: all 1)."""
    sampler = check_sampler(sampler)
    if sampler == "unipc":
        return unipc_orders(num_steps, ORDER[sampler])
    return dpm_orders(num_steps, ORDER[sampler])


def distilled_note(model: str, distilled_steps: int | None, sampler: str) -> str | None:
    """What to tell a user who samples a distilled model with another sampler than DDIM: allowed, but the model was
    trained to be walked by DDIM (on its own N-step grid), which stays its default."""
    if distilled_steps is None or sampler == DEFAULT_SAMPLER:
        return None
    return (f"{model} was distilled for {distilled_steps}-step DDIM, its default sampler; sampling it with "
            f"{LABEL[sampler]} as asked")
