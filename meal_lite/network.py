"""Is there a network? One short probe, so that a missing network fails in seconds, not minutes.

Without a network, timm retries a download for about 46 s and then fails with a message that does not
name the model, and torchvision's ImageNette download hangs until its socket times out. meal-lite asks
first: ``HF_HUB_OFFLINE`` (the user said so), then a TCP connection to the host and port that the
download itself will use (a hub mirror set by ``HF_ENDPOINT`` is probed, not the default host).
Weights and datasets both ask through this module.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from huggingface_hub import constants as hf_constants

from meal_lite import settings

__all__ = ["OFFLINE_HINT", "is_url", "offline_mode", "host_reachable", "url_reachable"]

#: The end of every "no network" sentence: how to work without one.
OFFLINE_HINT = "or set MEAL_LITE_PROFILE=offline to run without a network"

_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}


def is_url(location: str | os.PathLike) -> bool:
    return urlparse(str(location)).scheme in ("http", "https", "ftp", "s3")


def offline_mode() -> bool:
    """True when the user said there is no network (HF_HUB_OFFLINE, read now and as huggingface_hub saw it)."""
    return settings.hub_offline() or bool(hf_constants.HF_HUB_OFFLINE)


def host_reachable(host: str, port: int = 443, timeout: float | None = None) -> bool:
    """A short TCP probe of ``host:port`` (``$MEAL_LITE_PROBE_TIMEOUT`` seconds at most).

    Behind an HTTP(S) proxy a direct probe says nothing, so we answer "reachable" and let the real
    download decide.
    """
    if settings.behind_proxy():
        return True
    try:
        with socket.create_connection((host, port), timeout=settings.probe_timeout() if timeout is None else timeout):
            return True
    except OSError:
        return False


def url_reachable(url: str, timeout: float | None = None) -> bool:
    """:func:`host_reachable` for the host and port of ``url`` (the scheme's port when it names none)."""
    parsed = urlparse(url)
    port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 443)
    return host_reachable(parsed.hostname or url, port, timeout)
