"""Independent trainings in one-thread worker processes: how the CPU profile uses every core.

The offline profile's models are small. On a two-core CPU a second torch thread inside one process adds
little to them (one seed of the demo's three continuations: 28.6 s with two threads, 36.2 s with one),
while two one-thread processes each run at full speed (36.2 s each, side by side). So work that splits
into independent trainings (the digits teachers, the seeds of the protocol, the arms of the
dark-knowledge experiment) goes to a pool of spawned processes with one thread each. A run on a GPU
keeps everything in its one process.

One thread also fixes the order of floating-point sums: a model trained in a worker is bit-identical to
the same model trained in-process under :func:`one_thread`, whatever the machine's core count.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import torch

from meal_lite import settings
from meal_lite.errors import ConfigError

__all__ = ["WORKERS_ENV_VAR", "resolve_workers", "cpu_pool", "one_thread"]

WORKERS_ENV_VAR = settings.WORKERS


def resolve_workers(requested: int | None, device: torch.device | str) -> int:
    """Worker processes to use: ``requested``, else ``$MEAL_LITE_WORKERS``, else 2 on a CPU with two or
    more cores and 1 on a GPU (1 means: in this process, no pool)."""
    device = torch.device(device)
    if requested is None:
        requested = settings.workers()
    if requested is not None:
        if requested < 1:
            raise ConfigError(f"workers={requested} is too few; use 1 (train in this process) or more (one-thread worker processes).")
        if requested > 1 and device.type != "cpu":
            raise ConfigError(f"workers={requested} is possible only on a CPU, and this run is on {device}; use 1.")
        return int(requested)
    return 1 if device.type != "cpu" else max(1, min(2, os.cpu_count() or 1))


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)  # the parent was killed: stop instead of training on for nobody


def _start_worker(parent: int, initializer: Callable[..., None] | None, initargs: Sequence[Any]) -> None:
    # The parent's pid comes from the parent: a worker still importing torch when its parent is killed
    # would otherwise read its new parent (init) here and never notice.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(1)
    if initializer is not None:
        initializer(*initargs)


def cpu_pool(workers: int, initializer: Callable[..., None] | None = None, initargs: Sequence[Any] = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, each set to one torch thread before ``initializer`` runs.

    Spawned, not forked: a forked child may hang on the parent's OpenMP thread pool.
    """
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
        initargs=(os.getpid(), initializer, tuple(initargs)),
    )


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one torch thread (as a worker does), then restore the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
