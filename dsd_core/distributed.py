"""Data-parallel runs with torch.distributed: who this process is, and the few collectives DSD needs.

`torchrun --nproc-per-node K …` (or `dsd distill --nproc K`, which starts torchrun) sets RANK, WORLD_SIZE and
LOCAL_RANK; `setup()` joins the process group (NCCL on GPUs, gloo on the CPU) and picks this rank's GPU. A
single process is the world of one, and every helper is then the identity, so the engine has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import DsdError, OptionError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone writes events, previews and checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


SINGLE = World()


def from_env() -> World:
    """The world torchrun describes in the environment; one process when it says nothing."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError:
        raise DsdError("RANK/WORLD_SIZE/LOCAL_RANK must be integers (set by torchrun)") from None


def setup(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun started (if any); each rank gets its own GPU on a CUDA machine."""
    world = from_env()
    if not world.active:
        return world, device
    if device.type == "cuda":
        if torch.cuda.device_count() < world.size:
            raise OptionError("{size} processes but {gpus} GPUs: use {nproc} ≤ the GPUs", size=world.size,
                              gpus=torch.cuda.device_count())
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, device


def teardown(world: World) -> None:
    """Leave the group together: a rank that destroys it while rank 0 still writes the model can make gloo
    abort (`terminate called without an active exception`), so all ranks meet at a barrier first."""
    if world.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_cat(x: torch.Tensor, world: World) -> torch.Tensor:
    """Every rank's `x` (equal shapes) concatenated in rank order along dim 0, on every rank."""
    if not world.active:
        return x
    parts = [torch.empty_like(x) for _ in range(world.size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def mean(value: float, world: World, device: torch.device) -> float:
    """The mean of a scalar over the ranks."""
    if not world.active:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world.size


def any_true(mask: torch.Tensor, world: World) -> torch.Tensor:
    """Each rank's boolean mask over its own shard, gathered into the global mask."""
    return gather_cat(mask.to(torch.uint8), world).bool()
