"""Every environment variable meal-lite reads, in one place, each checked when it is read.

Environment variables are how a notebook kernel, a worker process or a torchrun job inherits a
setting it was not passed; a command-line option or a function argument always wins over them. A bad
value raises :class:`~meal_lite.errors.ConfigError` with one sentence naming the variable, its value
and a good one - at the moment it is read, never at import time. The README's "Environment variables"
table lists the same names (a test checks that the two agree).

| variable | read by | meaning |
|---|---|---|
| ``MEAL_LITE_PROFILE`` | :func:`profile` | ``imagenette`` (default) or ``offline`` |
| ``MEAL_LITE_CACHE`` | :func:`cache_dir` | where the offline profile's trained teachers are kept |
| ``MEAL_LITE_DATA_HOME`` | :func:`data_home` | the folder a relative ``data.root`` is resolved against |
| ``MEAL_LITE_WORKERS`` | :func:`workers` | one-thread worker processes for CPU experiments |
| ``MEAL_LITE_PROBE_TIMEOUT`` | :func:`probe_timeout` | seconds a network probe waits (default 3) |
| ``MEAL_LITE_DOWNLOAD_TIMEOUT`` | :func:`download_timeout` | seconds a download waits for the server's next bytes (default 60) |
| ``MEAL_LITE_IMAGENETTE_URL``, ``MEAL_LITE_IMAGENETTE_MD5`` | :func:`imagenette_mirror` | where ImageNette is downloaded from (a mirror) and its md5 |
| ``MEAL_LITE_KILL_AT_STEP``, ``MEAL_LITE_KILL_RANK`` | :func:`fault_drill` | the fault drill |
| ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE`` | :func:`hub_offline` | no network: fail at once |
| ``HF_ENDPOINT`` | huggingface_hub, when imported | the Hugging Face hub (or a mirror); meal-lite probes ``huggingface_hub.constants.ENDPOINT``, the one its downloads use |
| ``HTTPS_PROXY`` and friends | :func:`behind_proxy` | a proxy: probes cannot tell, downloads decide |
| ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``TORCHELASTIC_RESTART_COUNT`` | :func:`torchrun_env` | set by torchrun |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from meal_lite.errors import ConfigError

__all__ = [
    "VARIABLES",
    "TorchrunEnv",
    "behind_proxy",
    "cache_dir",
    "data_home",
    "download_timeout",
    "fault_drill",
    "hub_offline",
    "imagenette_mirror",
    "probe_timeout",
    "profile",
    "torchrun_env",
    "workers",
]

PROFILE = "MEAL_LITE_PROFILE"
CACHE = "MEAL_LITE_CACHE"
DATA_HOME = "MEAL_LITE_DATA_HOME"
WORKERS = "MEAL_LITE_WORKERS"
PROBE_TIMEOUT = "MEAL_LITE_PROBE_TIMEOUT"
DOWNLOAD_TIMEOUT = "MEAL_LITE_DOWNLOAD_TIMEOUT"
IMAGENETTE_URL = "MEAL_LITE_IMAGENETTE_URL"
IMAGENETTE_MD5 = "MEAL_LITE_IMAGENETTE_MD5"
KILL_AT_STEP = "MEAL_LITE_KILL_AT_STEP"
KILL_RANK = "MEAL_LITE_KILL_RANK"
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")
TORCHRUN = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "TORCHELASTIC_RESTART_COUNT")

#: Every variable read here (the README's table must name each of them).
VARIABLES = (PROFILE, CACHE, DATA_HOME, WORKERS, PROBE_TIMEOUT, DOWNLOAD_TIMEOUT, IMAGENETTE_URL, IMAGENETTE_MD5, KILL_AT_STEP, KILL_RANK, "HF_HUB_OFFLINE",
             "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", *PROXIES, *TORCHRUN)

_TRUE = ("1", "ON", "YES", "TRUE")


def _raw(name: str) -> str | None:
    """The variable's value, None when unset or empty."""
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _int(name: str, default: int | None, minimum: int | None = None, example: str = "1") -> int | None:
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"Environment variable {name}={raw!r} is not a whole number; set it to e.g. {example}.") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"Environment variable {name}={raw!r} is below {minimum}; set it to e.g. {example}.")
    return value


def profile() -> str | None:
    """``$MEAL_LITE_PROFILE`` as given (checked by :func:`meal_lite.config.profiles.resolve_profile`), or None."""
    return _raw(PROFILE)


def cache_dir() -> Path | None:
    """``$MEAL_LITE_CACHE`` as a path (``~`` expanded), or None."""
    raw = _raw(CACHE)
    return Path(raw).expanduser() if raw is not None else None


def data_home() -> Path | None:
    """``$MEAL_LITE_DATA_HOME`` as an absolute path (``~`` expanded), or None.

    A relative ``data.root`` (the profiles say ``data``) is resolved against it instead of the checkout or
    the working directory (:func:`meal_lite.data.sources.resolve_data_root`), so that processes started in
    different folders - notebook kernels, workers, the command line - share one copy of the data. A
    relative value would itself depend on the working directory, so it is refused.
    """
    raw = _raw(DATA_HOME)
    if raw is None:
        return None
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise ConfigError(f"Environment variable {DATA_HOME}={raw!r} is not an absolute path; set it to e.g. "
                          f"{Path.home() / 'meal-lite-data'}.")
    return path


def workers() -> int | None:
    """``$MEAL_LITE_WORKERS`` (a whole number >= 1), or None."""
    return _int(WORKERS, None, minimum=1, example="1 or 2")


def _seconds(name: str, default: float, example: str) -> float:
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"Environment variable {name}={raw!r} is not a positive number of seconds; set it to e.g. {example}.")
    return value


def probe_timeout() -> float:
    """``$MEAL_LITE_PROBE_TIMEOUT`` in seconds (a positive number; default 3)."""
    return _seconds(PROBE_TIMEOUT, 3.0, "3")


def download_timeout() -> float:
    """``$MEAL_LITE_DOWNLOAD_TIMEOUT``: seconds a download waits for the server's next bytes (default 60).

    It bounds a server that stops sending, not the length of a download that keeps going.
    """
    return _seconds(DOWNLOAD_TIMEOUT, 60.0, "60")


def imagenette_mirror() -> tuple[str, str | None] | None:
    """``($MEAL_LITE_IMAGENETTE_URL, $MEAL_LITE_IMAGENETTE_MD5 or None)``, or None when no URL is set.

    The URL must be http(s), ftp or file; the md5, when given, 32 hex digits. Which archive the URL must
    name is checked where the size is known (:mod:`meal_lite.data.imagefolders`).
    """
    url, md5 = _raw(IMAGENETTE_URL), _raw(IMAGENETTE_MD5)
    if url is None:
        if md5 is not None:
            raise ConfigError(f"Environment variable {IMAGENETTE_MD5} is set but {IMAGENETTE_URL} is not; set both (a mirror's "
                              f"URL and its archive's md5) or unset {IMAGENETTE_MD5}.")
        return None
    if url.split("://", 1)[0].lower() not in ("http", "https", "ftp", "file") or "://" not in url:
        raise ConfigError(f"Environment variable {IMAGENETTE_URL}={url!r} is not an http(s), ftp or file URL; set it to "
                          f"e.g. https://mirror.example.org/imagenette2-160.tgz.")
    if md5 is not None:
        md5 = md5.strip().lower()
        if len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5):
            raise ConfigError(f"Environment variable {IMAGENETTE_MD5}={md5!r} is not an md5 digest (32 hex digits); set "
                              f"it to the output of `md5sum` on the archive.")
    return url, md5


def hub_offline() -> bool:
    """True when ``$HF_HUB_OFFLINE`` (or ``$TRANSFORMERS_OFFLINE``) says there is no network."""
    value = _raw("HF_HUB_OFFLINE") or _raw("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in _TRUE


def behind_proxy() -> bool:
    """True when an HTTP(S) proxy is set: a direct probe then says nothing about the network."""
    return any(_raw(name) for name in PROXIES)


@dataclass(frozen=True)
class TorchrunEnv:
    """What torchrun tells each process: its place in the job and which attempt this is."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    restart_count: int = 0


def torchrun_env() -> TorchrunEnv:
    """``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and ``TORCHELASTIC_RESTART_COUNT`` (defaults: one process, first attempt)."""
    return TorchrunEnv(
        world_size=_int("WORLD_SIZE", 1, minimum=1, example="2 (torchrun sets it)"),
        rank=_int("RANK", 0, minimum=0, example="0 (torchrun sets it)"),
        local_rank=_int("LOCAL_RANK", 0, minimum=0, example="0 (torchrun sets it)"),
        restart_count=_int("TORCHELASTIC_RESTART_COUNT", 0, minimum=0, example="0 (torchrun sets it)"),
    )


def fault_drill() -> tuple[int, int] | None:
    """``(step, rank)`` of the fault drill when ``$MEAL_LITE_KILL_AT_STEP`` is set, else None.

    The rank defaults to 1 under torchrun with two or more workers, else 0.
    """
    step = _int(KILL_AT_STEP, None, minimum=1, example="7")
    if step is None:
        return None
    default_rank = 1 if torchrun_env().world_size > 1 else 0
    return step, _int(KILL_RANK, default_rank, minimum=0, example="1")
