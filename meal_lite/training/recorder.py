"""Everything in a run that depends on the process rank, in one place.

Progress bars, printed lines, ``metrics.jsonl`` and checkpoints happen on the main process only
(rank 0 under torchrun); on the others :class:`RunRecorder` does nothing. With no output folder it
writes nothing at all, which is how the demo and the book train students in memory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

from tqdm.auto import tqdm

from meal_lite.files import write_text
from meal_lite.checkpoint import save_checkpoint

__all__ = ["CHECKPOINT_NAME", "BEST_NAME", "METRICS_NAME", "RunRecorder", "epoch_summary"]

CHECKPOINT_NAME = "last.pt"
BEST_NAME = "best.pt"
METRICS_NAME = "metrics.jsonl"


class RunRecorder:
    """Progress bars, printed lines, ``metrics.jsonl`` and checkpoints -- on the main process only.

    With ``out_dir`` None nothing is written; on a non-main rank nothing is shown or written.
    """

    def __init__(
        self, out_dir: str | Path | None, *, is_main: bool = True, progress: bool = True, verbose: bool = True
    ) -> None:
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.prints = is_main and verbose
        self.show_progress = progress and is_main
        self.writes = is_main and self.out_dir is not None

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    @property
    def metrics_path(self) -> Path | None:
        return self.out_dir / METRICS_NAME if self.out_dir is not None else None

    def start(self, completed_epochs: int) -> None:
        """Create the run folder and keep only the metrics lines of epochs already in the checkpoint."""
        if not self.writes:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.metrics_path
        if not path.exists():
            return
        kept = [line for line in path.read_text().splitlines() if _metrics_epoch(line) <= completed_epochs]
        write_text(path, "".join(line + "\n" for line in kept))

    def bar(self, iterable: Iterable, desc: str) -> Iterable:
        """A tqdm bar around ``iterable`` on the main process when progress is on, else the iterable."""
        if not self.show_progress:
            return iterable
        return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)

    def log(self, text: str) -> None:
        """Print one line on the main process (without breaking progress bars)."""
        if self.prints:
            tqdm.write(text)

    def append_metrics(self, metrics: dict) -> None:
        """Append one JSON line to ``metrics.jsonl``."""
        if self.writes:
            with open(self.metrics_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(metrics) + "\n")

    def save(self, state: dict, name: str = CHECKPOINT_NAME) -> None:
        """Write a checkpoint atomically (see :func:`meal_lite.checkpoint.save_checkpoint`)."""
        if self.writes:
            save_checkpoint(state, self.out_dir / name)


def _metrics_epoch(line: str) -> float:
    try:
        return json.loads(line)["epoch"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def epoch_summary(m: dict, epochs: int) -> str:
    """One printed line per epoch: lr, losses, discriminator accuracy, validation, seconds."""
    parts = [f"epoch {m['epoch']}/{epochs}", f"lr {m['lr']:.3g}", f"loss {m['train_loss']:.4f}"]
    if m["train_d_loss"] is not None:
        parts += [f"d_loss {m['train_d_loss']:.4f}", f"disc_acc {m['disc_acc']:.1f}%"]
    if m["val_top1"] is not None:
        parts += [f"val top1 {m['val_top1']:.2f}", f"top5 {m['val_top5']:.2f}"]
    parts.append(f"{m['seconds']:.1f}s")
    return "  ".join(parts)
