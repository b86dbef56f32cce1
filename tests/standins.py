"""Stand-ins for the two servers the imagenette profile downloads from, on 127.0.0.1, made by the tests.

- **fast.ai's archive host**: ``GET /imagenette2-160.tgz`` serves an archive in the exact layout of
  ``imagenette2-160.tgz`` (:func:`imagenette_archive`: top folder ``imagenette2-160/`` with ``train/`` and
  ``val/``, the ten wnid folders each, ``noisy_imagenette.csv``, JPEGs whose shorter side is 160 px at
  several aspect ratios), written by the test.
- **the Hugging Face hub**: ``HEAD``/``GET /{org}/{model}/resolve/{revision}/{filename}``, answered as
  ``huggingface_hub.hf_hub_download`` needs it (``ETag``, ``X-Repo-Commit``, ``Content-Length``; a 404
  with ``X-Error-Code: EntryNotFound`` for a file the repo lacks), serving ``model.safetensors`` files the
  test wrote from ``timm.create_model(name)`` (random weights: downloads do not depend on their values).

A route can also misbehave the way real servers do: cut the body off, stall, or serve a sequence of
bodies (a broken file first, then the good one). Every connection times out after
:data:`REQUEST_TIMEOUT` seconds and a stall lasts at most :data:`STALL_LIMIT` seconds (less when the server
stops), so no test can hang on the server. The server counts the requests it answers.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Sequence

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import save
from timm.models import get_pretrained_cfg

from meal_lite.data.imagefolders import IMAGENETTE_WNIDS

#: What a command pointed at the stand-ins must not inherit: the offline switch, another hub cache or
#: endpoint, a proxy (which would carry 127.0.0.1 requests elsewhere).
CLIENT_ENV_DROPPED = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT",
                      "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
REQUEST_TIMEOUT = 5.0  # seconds a connection may sit idle before the server drops it
STALL_LIMIT = 5.0  # the longest a stalling route waits
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the revision every stand-in hub repo is at
RELEASED = 1575158400  # file times in the archive: 2019-12-01, around the imagenette2 release

#: Image sizes (width, height) with a shorter side of 160 px, as in the 160px release.
SIZES_160 = ((213, 160), (160, 240), (240, 160), (160, 160), (160, 213))


@dataclass
class Route:
    """What one path answers: ``bodies`` in turn (one per GET, the last repeated), misbehaving as ``mode``.

    ``mode``: ``ok``; ``truncate`` (announce the whole length, send half, close); ``stall`` (send the
    headers and a few bytes, then nothing until the server stops or :data:`STALL_LIMIT` passes).
    """

    bodies: list[bytes]
    mode: str = "ok"
    hub: bool = False
    gets: int = 0

    @property
    def body(self) -> bytes:
        return self.bodies[min(self.gets, len(self.bodies) - 1)]


@dataclass
class StandInServer:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 at a free port; use it as a context manager or call stop()."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def serve(self, path: str, *bodies: bytes, mode: str = "ok") -> None:
        self.routes[path] = Route(list(bodies), mode)

    def serve_hub_file(self, repo: str, filename: str, *bodies: bytes, revision: str = "main") -> None:
        self.routes[f"/{repo}/resolve/{revision}/{filename}"] = Route(list(bodies), hub=True)

    def count(self, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, _ in self.requests if method is None or m == method)

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=REQUEST_TIMEOUT)

    def __enter__(self) -> "StandInServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _handler(server: StandInServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def _answer(self, send_body: bool) -> None:
            with server._lock:
                server.requests.append((self.command, self.path))
                route = server.routes.get(self.path)
                body = route.body if route else b""
                if route and send_body:
                    route.gets += 1
            if route is None:
                self.send_response(404)
                if "/resolve/" in self.path:  # the hub's answer for a file its repo lacks
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            if route.hub:
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
            if route.mode != "ok":
                self.send_header("Connection", "close")
            self.end_headers()
            if not send_body:
                return
            try:
                if route.mode == "truncate":
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                elif route.mode == "stall":
                    self.wfile.write(body[:16])
                    self.wfile.flush()
                    server._stopping.wait(STALL_LIMIT)
                    self.close_connection = True
                else:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up first
                self.close_connection = True

    return Handler


# --------------------------------------------------------------------------------------------------
# What the servers serve


def _jpeg(k: int, size: tuple[int, int], seed: int) -> bytes:
    """A JPEG of class colour ``k`` plus noise, ``size`` = (width, height)."""
    rng = np.random.RandomState(seed)
    colour = np.random.RandomState(1000 + k).randint(30, 226, size=3)
    w, h = size
    pixels = np.clip(colour[None, None, :] + rng.randint(-20, 21, size=(h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


#: Images per class of the real ``imagenette2-160`` release (wnid order): 9,469 training, 3,925 validation.
FULL_TRAIN = (963, 955, 993, 858, 941, 956, 961, 931, 951, 960)
FULL_VAL = (387, 395, 357, 386, 409, 394, 389, 419, 399, 390)


def imagenette_archive(n_train: int | Sequence[int] = 3, n_val: int | Sequence[int] = 2, top: str = "imagenette2-160") -> bytes:
    """A ``.tgz`` in the layout of fast.ai's ``imagenette2-160.tgz``, ``n_train``/``n_val`` images per class
    (a number, or one per class: :data:`FULL_TRAIN` and :data:`FULL_VAL` give the release's sizes).

    File names follow the release (``train/n01440764/n01440764_10026.JPEG``,
    ``val/n01440764/ILSVRC2012_val_00009111.JPEG``), and ``noisy_imagenette.csv`` lists every image with
    its label (the release's noisy-label columns all repeat it here) and ``is_valid``.
    """
    files: list[tuple[str, bytes]] = []
    rows = ["path,noisy_labels_0,noisy_labels_1,noisy_labels_5,noisy_labels_25,noisy_labels_50,is_valid"]
    for split, counts in (("train", n_train), ("val", n_val)):
        counts = [counts] * len(IMAGENETTE_WNIDS) if isinstance(counts, int) else list(counts)
        for k, (wnid, n) in enumerate(zip(IMAGENETTE_WNIDS, counts)):
            for i in range(n):
                seed = 2 * (10_000 * k + i) + (split == "val")  # a different image for every file
                name = f"{wnid}_{10000 + i}.JPEG" if split == "train" else f"ILSVRC2012_val_{k * 10_000 + i:08d}.JPEG"
                path = f"{split}/{wnid}/{name}"
                files.append((path, _jpeg(k, SIZES_160[(k + i) % len(SIZES_160)], seed)))
                rows.append(f"{path},{wnid},{wnid},{wnid},{wnid},{wnid},{split == 'val'}")
    files.append(("noisy_imagenette.csv", ("\n".join(rows) + "\n").encode()))
    folders = {top} | {f"{top}/{split}" for split in ("train", "val")}
    folders |= {f"{top}/{Path(path).parent}" for path, _ in files if "/" in path}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for folder in sorted(folders):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, RELEASED
            tar.addfile(info)
        for path, data in files:
            info = tarfile.TarInfo(f"{top}/{path}")
            info.size, info.mode, info.mtime = len(data), 0o644, RELEASED
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def hub_weights(name: str, seed: int = 0) -> tuple[bytes, dict]:
    """``model.safetensors`` bytes of timm model ``name`` with random weights, and its state dict."""
    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in timm.create_model(name, pretrained=False).state_dict().items()}
    return save(state), state


def hub_repo(name: str) -> str:
    """The hub repo timm downloads ``name``'s default weights from (``timm/resnet18.a1_in1k``)."""
    return get_pretrained_cfg(name).hf_hub_id
