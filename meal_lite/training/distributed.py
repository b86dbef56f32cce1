"""Single-process and multi-process (torchrun / DDP) runs behind one small object.

``torchrun --nproc_per_node=N -m meal_lite.cli train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_distributed` reads them and starts a process group only when
``WORLD_SIZE > 1`` (NCCL on CUDA, Gloo on CPU). A plain ``python`` run gets a context with
``world_size == 1`` and never touches ``torch.distributed``, so the same trainer code serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from meal_lite import settings
from meal_lite.errors import ConfigError

__all__ = [
    "DistributedContext",
    "resolve_device",
    "init_distributed",
    "all_reduce_sum",
    "barrier",
    "cleanup",
    "all_gather_objects",
]


@dataclass
class DistributedContext:
    """Where this process sits in a run: its rank, the world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on the one process that prints, logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's GPU if CUDA is available, else CPU; ``cuda`` -> ``cuda:<local_rank>``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={device} but no CUDA GPU is available; use train.device=cpu or auto.")
        if device == "cuda":
            device = f"cuda:{local_rank}"
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"train.device={device!r} is not a device; use auto, cpu, cuda or cuda:N.") from None


def init_distributed(device: str = "auto") -> DistributedContext:
    """Read torchrun's environment and, when ``WORLD_SIZE > 1``, join the process group."""
    env = settings.torchrun_env()
    world_size, rank, local_rank = env.world_size, env.rank, env.local_rank
    dev = resolve_device(device, local_rank)
    if world_size > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes in place (no-op without a process group); returns it."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(obj: object) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects); ``[obj]`` without a process group."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out: list = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]
