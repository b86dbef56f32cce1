"""A fault drill: kill one worker at a chosen step, once, to prove that a run survives it.

A week-long multi-GPU run will lose a worker some day (a node reboots, the OOM killer strikes).
``torchrun --max-restarts=K`` then restarts every worker and meal-lite continues from its last
checkpoint (:class:`meal_lite.training.trainer.Trainer`). To check that path on your own cluster - and in meal-lite's tests
and book - set::

    MEAL_LITE_KILL_AT_STEP=K      # the optimiser step (counted over the whole run, from 1) to die after
    MEAL_LITE_KILL_RANK=R         # which rank dies (default: 1 under torchrun with 2+ workers, else 0)

and the worker of rank ``R`` sends itself SIGKILL right after step ``K``: no cleanup, no exception, as
a real crash. It fires only on torchrun's first attempt (``TORCHELASTIC_RESTART_COUNT`` unset or 0),
so the restarted job runs through. Without the variable this module does nothing.
"""

from __future__ import annotations

import os
import signal

from meal_lite import settings

__all__ = ["KILL_AT_STEP", "KILL_RANK", "maybe_fail"]

KILL_AT_STEP = settings.KILL_AT_STEP
KILL_RANK = settings.KILL_RANK


def maybe_fail(rank: int, global_step: int) -> None:
    """SIGKILL this process if the drill asks for ``rank`` at ``global_step`` on the first attempt."""
    drill = settings.fault_drill()
    if drill is None or settings.torchrun_env().restart_count:
        return
    if drill == (global_step, rank):
        os.kill(os.getpid(), signal.SIGKILL)
