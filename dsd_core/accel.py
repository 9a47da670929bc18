"""GPU speed options shared by training and distillation: mixed precision, torch.compile, pinned batches.

Mixed precision wraps only the network call: the network runs under autocast (bf16 or fp16) and its output is
cast back to fp32, so the DDIM arithmetic, guidance mixing and the loss stay in fp32. bf16 needs no loss
scaling; fp16 uses a GradScaler (see `Scaler`). On the CPU bf16 autocast works too (slowly), which is how
the tests exercise this path.
"""

from __future__ import annotations

from typing import Callable

import torch

from .errors import OptionError

AMP_MODES = ("off", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(mode: str, device: torch.device | None = None) -> str:
    if mode not in AMP_MODES:
        raise OptionError("unknown {amp} {mode!r}; choose one of {modes}", mode=mode, modes=", ".join(AMP_MODES))
    if mode == "fp16" and device is not None and device.type != "cuda":
        raise OptionError("{amp} fp16 needs a CUDA device; use {amp} bf16 on the CPU")
    return mode


def autocast_net(net: Callable, device: torch.device, mode: str) -> Callable:
    """`net` called under autocast, returning fp32; `net` itself when mode is off."""
    if mode == "off":
        return net
    dtype = _DTYPES[mode]

    def run(*args, **kwargs):
        with torch.autocast(device.type, dtype=dtype):
            out = net(*args, **kwargs)
        return out.float()

    return run


def maybe_compile(net: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """torch.compile (the first call per input shape compiles: tens of seconds) or the module unchanged."""
    return torch.compile(net) if enabled else net


class Scaler:
    """Backward + clip + optimizer step, with fp16 loss scaling when asked; plain otherwise."""

    def __init__(self, device: torch.device, mode: str):
        self.scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None

    def step(self, loss: torch.Tensor, params, opt: torch.optim.Optimizer, clip: float) -> torch.Tensor:
        params = list(params)
        if self.scaler is None:
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            return norm
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
        self.scaler.step(opt)
        self.scaler.update()
        return norm


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch to the device; through pinned memory (asynchronous copy) when that device is a GPU."""
    if device.type != "cuda":
        return batch.to(device)
    return batch.pin_memory().to(device, non_blocking=True)
