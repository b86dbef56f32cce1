"""Where and how a result was made: the hardware record, the command and the date, for every results file.

A figure in the README or the book says on what hardware it was measured; CPU kernels differ between
machines, so the same command can give other digits elsewhere. Every experiment writes the same record,
from :func:`hardware`, and the commands add the command line and the date (:func:`provenance`).
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

import torch

__all__ = ["hardware", "provenance"]


def _cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what :func:`platform.processor` says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def hardware(device: Any = "cpu", **extra: Any) -> dict:
    """The machine a result was made on: CPU, core count, torch threads and version, the device (with
    the GPU's name on CUDA), and any ``extra`` entries (e.g. ``workers``)."""
    record = {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return record | extra


def provenance(command: str) -> dict:
    """``{"command", "date"}``: the command that made a result and when it started (UTC, ISO 8601)."""
    return {"command": command, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
