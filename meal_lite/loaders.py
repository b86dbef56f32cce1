"""Loaders whose data order is a function of ``(seed, epoch)`` only.

:func:`build_loader` always uses a sampler with ``set_epoch(epoch)`` (our :class:`EpochSampler` in one
process, ``DistributedSampler`` under DDP), so an interrupted run resumes with exactly the batches it
would have seen. :func:`set_loader_epoch` is the one place that tells a loader which epoch it is in.
"""

from __future__ import annotations

import itertools
from typing import Iterable, Iterator, Sized

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from .errors import ConfigError

__all__ = ["EpochSampler", "build_loader", "set_loader_epoch", "LimitedLoader"]


class EpochSampler(Sampler[int]):
    """Shuffled (or sequential) indices whose order is a function of ``(seed, epoch)`` only.

    Call ``set_epoch(epoch)`` before each epoch, as with ``DistributedSampler``. The permutation comes
    from a private ``torch.Generator`` seeded with a mix of ``seed`` and ``epoch`` (NumPy's
    ``SeedSequence``, so that nearby seeds and epochs give unrelated orders), never from the global RNG.
    With ``world_size > 1`` it yields this rank's share, ``indices[rank::world_size]``, without the
    padding ``DistributedSampler`` adds; that is what evaluation wants (every image counted once).
    """

    def __init__(
        self, data_source: Sized | int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        self.n = data_source if isinstance(data_source, int) else len(data_source)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        state = np.random.SeedSequence([abs(self.seed), self.epoch, int(self.seed < 0)]).generate_state(2, dtype=np.uint32)
        g = torch.Generator()
        g.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.rank :: self.world_size])

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    num_workers: int = 0,
    seed: int = 0,
    distributed: bool = False,
    pin_memory: bool | None = None,
    drop_last: bool | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> DataLoader:
    """A DataLoader whose sampler has ``set_epoch(epoch)`` in every case.

    - single process: :class:`EpochSampler` (shuffled for training, in order for evaluation);
    - ``distributed`` training: ``torch.utils.data.DistributedSampler`` (shuffle, seed) - each rank
      gets its share, order fixed by ``seed + epoch``; distributed evaluation: :class:`EpochSampler`
      sharded without padding, so each image is counted exactly once.

    ``pin_memory`` defaults to "CUDA is available"; ``drop_last`` defaults to ``train`` (a last batch
    of one sample breaks BatchNorm) unless that would leave no batch at all. Workers are not persistent:
    each epoch's workers are seeded from the global torch RNG, which a checkpoint restores, so random
    crops and flips replay exactly on resume.
    """
    if batch_size < 1:
        raise ConfigError(f"data.batch_size must be >= 1, but was given {batch_size!r}.")
    sampler: Sampler[int]
    if distributed:
        if rank is None or world_size is None:
            if not (dist.is_available() and dist.is_initialized()):
                raise ConfigError("build_loader(distributed=True) needs an initialised process group or explicit rank and world_size.")
            rank, world_size = dist.get_rank(), dist.get_world_size()
        if train:
            sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False)
        else:
            sampler = EpochSampler(dataset, shuffle=False, seed=seed, rank=rank, world_size=world_size)
    else:
        sampler = EpochSampler(dataset, shuffle=train, seed=seed)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    if drop_last is None:
        drop_last = bool(train) and len(sampler) >= batch_size
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=False,
    )



def set_loader_epoch(loader: Iterable, epoch: int) -> None:
    """Call ``set_epoch(epoch)`` on the loader's sampler (or its batch sampler's), so the order depends on it.

    A no-op for loaders without such a sampler (a plain list of batches, say).
    """
    batch_sampler = getattr(loader, "batch_sampler", None)
    for obj in (getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None), batch_sampler):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            return


class LimitedLoader:
    """``loader`` cut to its first ``limit`` batches (None: all), keeping ``len`` for progress bars."""

    def __init__(self, loader: Iterable, limit: int | None) -> None:
        self.loader, self.limit = loader, limit

    def __iter__(self) -> Iterator:
        return iter(self.loader) if self.limit is None else itertools.islice(self.loader, self.limit)

    def __len__(self) -> int:
        n = len(self.loader)  # type: ignore[arg-type]
        return n if self.limit is None else min(n, self.limit)
