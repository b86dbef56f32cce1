"""Where image data comes from: the folder a relative ``data.root`` means, and ImageNette's archive.

**The data root.** A relative ``data.root`` (the profiles say ``data``) is resolved against
``MEAL_LITE_DATA_HOME`` when that is set, so that processes started in different folders (a notebook
kernel each, the command line) share one copy of the data wherever they run; else against the project
root when meal-lite runs inside a checkout (the folder holding ``pyproject.toml`` and ``meal_lite/``,
found by walking up from the working directory), so the command line, run from the root, and the
chapters, run in ``book/``, share one copy of the data; outside a checkout it is relative to the working
directory, as any path is. An absolute ``data.root`` is used as it is.

**The archive.** ImageNette is downloaded by torchvision (its download, md5 check and extraction) from
the official fast.ai address, or from a mirror named by ``MEAL_LITE_IMAGENETTE_URL`` (with
``MEAL_LITE_IMAGENETTE_MD5``; default: the official archive's md5): what a user behind a firewall needs.
The download goes into a temporary folder next to its destination, is checked and extracted there, and
only a complete ``imagenette2-160/`` (say) is moved into place; on any failure the temporary folder is
removed, so nothing half-extracted is left and the next run starts afresh. Each failure becomes one
sentence: the server's HTTP error, a cut-off download, a wrong checksum, a server that stops sending
(``MEAL_LITE_DOWNLOAD_TIMEOUT`` seconds per read), an archive that does not hold ImageNette.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import zlib
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from filelock import FileLock
from torchvision.datasets import Imagenette
from torchvision.datasets.utils import download_and_extract_archive

from meal_lite import settings
from meal_lite.errors import ConfigError, DataError, first_line
from meal_lite.network import OFFLINE_HINT, url_reachable

__all__ = ["project_root", "resolve_data_root", "imagenette_archive", "imagenette_folder_name", "download_imagenette"]


def project_root(start: str | os.PathLike | None = None) -> Path | None:
    """The meal-lite checkout holding ``start`` (default: the working directory), or None outside one."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "meal_lite").is_dir():
            return folder
    return None


def resolve_data_root(root: str | os.PathLike) -> Path:
    """``root`` with ``~`` expanded; a relative one against ``$MEAL_LITE_DATA_HOME``, else the project root
    inside a checkout, else the working directory (see above)."""
    path = Path(root).expanduser()
    if path.is_absolute():
        return path
    return (settings.data_home() or project_root() or Path.cwd()) / path


# torchvision's table of the official archives, by size: (URL, md5).
_OFFICIAL = dict(Imagenette._ARCHIVES)


def imagenette_folder_name(size: str) -> str:
    """The folder the ``size`` archive extracts to (``imagenette2-160`` for 160px), as torchvision names it."""
    return Path(_OFFICIAL[size][0]).stem


def imagenette_archive(size: str) -> tuple[str, str]:
    """``(URL, md5)`` of the ``size`` archive a download uses: the mirror's when one is set, else the official.

    A mirror's URL must end in the official file name of that size (``imagenette2-160.tgz``): torchvision
    names the extracted folder after it, and a 320px archive is never taken for the 160px one.
    """
    official_url, official_md5 = _OFFICIAL[size]
    mirror = settings.imagenette_mirror()
    if mirror is None:
        return official_url, official_md5
    url, md5 = mirror
    wanted = Path(official_url).name
    if Path(url).name != wanted:
        raise ConfigError(
            f"{settings.IMAGENETTE_URL}={url} does not end in '{wanted}', the archive data.imagenette_size={size} "
            f"needs; point it at the mirror's {wanted} (without a query string) or change data.imagenette_size."
        )
    return url, md5 or official_md5


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Every new socket waits at most ``seconds`` per operation (torchvision's urlopen sets no timeout)."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def _probe(url: str, size: str, folder: Path) -> None:
    """Fail in seconds, not minutes, when the host the download will use cannot be reached."""
    if urlparse(url).scheme in ("http", "https", "ftp") and not url_reachable(url):
        raise DataError(
            f"ImageNette ({size}) is not in '{folder}' and {url} cannot be reached (no network?); connect once "
            f"to download it, set {settings.IMAGENETTE_URL} to a mirror you can reach, or download the archive "
            f"elsewhere and extract it into '{folder.parent}', {OFFLINE_HINT}."
        )


def _why(exc: BaseException, url: str, md5: str) -> str:
    """What went wrong with a download, as the middle of one sentence."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered HTTP {exc.code} {exc.reason} for {url}"
    if isinstance(exc, (TimeoutError, socket.timeout)) or isinstance(reason, (TimeoutError, socket.timeout)):
        return (f"the server at {url} sent nothing for {settings.download_timeout():g} s "
                f"({settings.DOWNLOAD_TIMEOUT})")
    if isinstance(exc, (http.client.IncompleteRead, ConnectionError)):
        return f"the download of {url} was cut off ({first_line(exc, 100)})"
    if isinstance(exc, RuntimeError) and "corrupted" in str(exc):
        return f"the file downloaded from {url} does not have the md5 {md5}, so it is damaged or another file"
    if isinstance(exc, (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)):
        return f"the archive from {url} cannot be extracted ({first_line(exc, 100)})"
    if isinstance(exc, urllib.error.URLError):
        return f"{url} cannot be reached ({first_line(reason or exc, 100)})"
    return f"downloading {url} failed ({first_line(exc, 100)})"


def download_imagenette(root: Path, size: str, url: str, md5: str) -> Path:
    """Download, check and extract the ``size`` archive from ``url`` so that ``root/<folder>`` appears whole.

    Everything happens in a temporary folder inside ``root``; the extracted folder is renamed into place
    (atomic on one file system) only when it holds ``train/`` and ``val/``. On failure the temporary
    folder is removed and :class:`DataError` says what went wrong, in one sentence. Processes that share
    ``root`` (two notebooks, the workers of a test run) download one at a time, under a lock file in
    ``root``: whoever waited finds the folder in place and downloads nothing.
    """
    name = imagenette_folder_name(size)
    target = root / name
    _probe(url, size, target)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{name}.lock")):
        if (target / "train").is_dir() and (target / "val").is_dir():  # another process downloaded it meanwhile
            return target
        _download_into(root, name, size, url, md5)
    return target


def _download_into(root: Path, name: str, size: str, url: str, md5: str) -> None:
    """The download itself, for :func:`download_imagenette` (which holds the lock)."""
    target = root / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.download-", dir=root))
    try:
        try:
            with _socket_timeout(settings.download_timeout()):
                download_and_extract_archive(url, str(staging), filename=f"{name}.tgz", md5=md5, remove_finished=True)
        except (OSError, RuntimeError, EOFError, tarfile.TarError, zlib.error, http.client.HTTPException) as exc:
            raise DataError(
                f"ImageNette ({size}) could not be downloaded into '{target}': {_why(exc, url, md5)}; nothing was "
                f"kept, so the next run starts afresh (check the network or {settings.IMAGENETTE_URL}, or extract "
                f"the archive into '{root}' yourself), {OFFLINE_HINT}."
            ) from None
        extracted = staging / name
        if not ((extracted / "train").is_dir() and (extracted / "val").is_dir()):
            raise DataError(
                f"The archive from {url} does not hold '{name}/train' and '{name}/val', so it is not ImageNette "
                f"{size}; point {settings.IMAGENETTE_URL} at the {name}.tgz archive."
            )
        try:
            os.rename(extracted, target)
        except OSError:
            if not target.is_dir():  # else another process put its own copy there first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
