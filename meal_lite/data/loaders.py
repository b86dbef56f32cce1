"""Loaders whose batches are a function of ``(seed, epoch)`` only: the order and every random view.

:func:`build_loader` always uses a sampler with ``set_epoch(epoch)`` (our :class:`EpochSampler`, in one
process and, sharded and padded, under DDP), and for training wraps the dataset in :class:`SeededViews`,
which draws each image's random augmentation from a seed made of ``(seed, epoch, index)``. So:

- an interrupted run resumes with exactly the batches it would have seen, whatever the number of
  data-loader workers and wherever in the epoch it stopped;
- the same image gets the same view in every arm of an experiment (a control and a distilled student
  that start from one seed see identical batches), and under any number of processes;
- a stored view can be replayed: view ``r`` of image ``i`` is the transform run under
  :func:`view_seed` ``(seed, r, i)``.

:func:`set_loader_epoch` is the one place that tells a loader which epoch it is in.
"""

from __future__ import annotations

import itertools
import random
from typing import Iterable, Iterator, Sized

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from meal_lite.errors import ConfigError

__all__ = ["mix_seed", "view_seed", "SeededViews", "EpochSampler", "build_loader", "set_loader_epoch", "LimitedLoader"]


def mix_seed(*parts: int) -> int:
    """One 63-bit seed from several integers, so that nearby inputs give unrelated streams (NumPy's SeedSequence)."""
    words = [abs(int(p)) for p in parts] + [sum(1 << i for i, p in enumerate(parts) if int(p) < 0)]
    high, low = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return (int(high) << 31) ^ int(low)


def view_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of image ``index``'s random view in ``epoch`` of a run seeded with ``seed``."""
    return mix_seed(seed, epoch, index, 0x5EED)


class SeededViews(Dataset):
    """``dataset`` whose random augmentation of image ``i`` in epoch ``e`` depends on
    ``(seed, e, i)`` only.

    Each ``__getitem__`` seeds torch's and Python's global generators (which torchvision
    and timm transforms draw from) with :func:`view_seed` inside a saved-and-restored
    RNG state, so the caller's random streams are untouched. Call :meth:`set_epoch` each
    epoch (:func:`set_loader_epoch` does); worker processes get the epoch with the
    dataset, since they start anew each epoch.
    """

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def view(self, index: int, epoch: int):
        """Item ``index`` as it is seen in ``epoch`` (the same pixels every time it is
        asked for)."""
        seed = view_seed(self.seed, epoch, index)
        python_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: fork_rng(devices=[]) restores only it, and
            # torch.manual_seed would also reseed (or, before CUDA starts, queue a
            # reseed of) every GPU's generator - per image.
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(python_state)

    def __getitem__(self, index: int):
        return self.view(index, self.epoch)

    def __getattr__(self, name: str):
        # Everything else (targets, classes, data_config...) is the wrapped dataset's.
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class EpochSampler(Sampler[int]):
    """Shuffled (or sequential) indices whose order is a function of ``(seed, epoch)`` only.

    Call ``set_epoch(epoch)`` before each epoch, as with ``DistributedSampler``. The permutation comes
    from a private ``torch.Generator`` seeded with a mix of ``seed`` and ``epoch`` (NumPy's
    ``SeedSequence``, so that nearby seeds and epochs give unrelated orders), never from the global RNG.
    With ``world_size > 1`` it yields this rank's share, ``indices[rank::world_size]``. Without ``pad``
    (evaluation) nothing is added, so every image is counted once; with ``pad`` (training) the order is
    extended by its own head to a multiple of ``world_size``, as ``DistributedSampler`` does, so every
    rank takes the same number of steps. Batch ``k`` of rank ``r`` under ``W`` processes with batch ``b``
    is then exactly rank ``r``'s share of batch ``k`` of one process with batch ``W*b``.

    ``skip`` (set by :func:`set_loader_epoch`) drops this rank's first ``skip`` indices: a run resumed
    mid-epoch continues at its sampler position without loading the images it already trained on.
    """

    def __init__(
        self,
        data_source: Sized | int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = False,
    ) -> None:
        self.n = data_source if isinstance(data_source, int) else len(data_source)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.pad = bool(pad)
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        state = np.random.SeedSequence([abs(self.seed), self.epoch, int(self.seed < 0)]).generate_state(2, dtype=np.uint32)
        g = torch.Generator()
        g.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
        return torch.randperm(self.n, generator=g).tolist()

    def _share(self) -> list[int]:
        order = self._order()
        if self.pad and self.n % self.world_size:
            extra = self.world_size - self.n % self.world_size
            order += (order * (extra // max(self.n, 1) + 1))[:extra]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._share()[self.skip :])

    def __len__(self) -> int:
        total = -(-self.n // self.world_size) if self.pad else len(range(self.rank, self.n, self.world_size))
        return max(total - self.skip, 0)


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
    - ``distributed`` training: :class:`EpochSampler` with padding - each rank gets its share of the
      one-process order, so W processes with batch b see the batches of one process with batch W*b;
      distributed evaluation: :class:`EpochSampler` sharded without padding, so each image is counted
      exactly once.

    Training loaders wrap the dataset in :class:`SeededViews` (random views from ``(seed, epoch,
    index)``). ``pin_memory`` defaults to "CUDA is available"; ``drop_last`` defaults to ``train`` (a last
    batch of one sample breaks BatchNorm) unless that would leave no batch at all. Workers are not
    persistent, so each epoch's workers receive the dataset with its epoch set.
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
            sampler = EpochSampler(dataset, shuffle=True, seed=seed, rank=rank, world_size=world_size, pad=True)
        else:
            sampler = EpochSampler(dataset, shuffle=False, seed=seed, rank=rank, world_size=world_size)
    else:
        sampler = EpochSampler(dataset, shuffle=train, seed=seed)
    if train and not isinstance(dataset, SeededViews):
        dataset = SeededViews(dataset, seed)
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
        # A private generator for the workers' base seed: iterating the loader then never draws from
        # the global RNG, so a run resumed mid-epoch continues the global stream where it was saved.
        generator=torch.Generator().manual_seed(mix_seed(seed, 0xDA7A)),
    )



def set_loader_epoch(loader: Iterable, epoch: int, skip_batches: int = 0) -> int:
    """Tell a loader's sampler (order) and dataset (views) which epoch it is in, and where to start.

    Calls ``set_epoch(epoch)`` on the sampler (or the batch sampler's) and on the dataset when they have
    it; a no-op for loaders without them (a plain list of batches, say). ``skip_batches`` > 0 asks to
    start after that many batches: a sampler with a ``skip`` attribute (:class:`EpochSampler`) does it
    without loading them. Returns the number of batches the caller must still skip itself (0 when the
    sampler did it).
    """
    batch_sampler = getattr(loader, "batch_sampler", None)
    sampler = None
    for obj in (getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None), batch_sampler):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            sampler = obj
            break
    dataset = getattr(loader, "dataset", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    batch_size = getattr(loader, "batch_size", None)
    if sampler is not None and hasattr(sampler, "skip") and batch_size:
        sampler.skip = int(skip_batches) * int(batch_size)
        return 0
    return int(skip_batches)


class LimitedLoader:
    """``loader`` cut to its first ``limit`` batches (None: all), keeping ``len`` for progress bars."""

    def __init__(self, loader: Iterable, limit: int | None) -> None:
        self.loader, self.limit = loader, limit

    def __iter__(self) -> Iterator:
        return iter(self.loader) if self.limit is None else itertools.islice(self.loader, self.limit)

    def __len__(self) -> int:
        n = len(self.loader)  # type: ignore[arg-type]
        return n if self.limit is None else min(n, self.limit)
