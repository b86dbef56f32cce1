"""Making a soft-label cache: the teachers run once over ``R`` seeded crops of every training image.

``meal-lite cache CONFIG`` (:func:`generate_cache`) draws crop ``r`` of image ``i`` from a seed made of
``(soft_labels.seed, r, i)`` with the run's RandomResizedCrop parameters
(:func:`~meal_lite.data.softlabels.draw_crop`), renders it exactly as training will replay it, runs the
teacher ensemble on large batches (on the run's device: the GPU when there is one) and keeps the top-k
of the ensemble's probabilities (format: :mod:`meal_lite.data.softlabels`).

- **Shards.** Images are cut into shards of ``soft_labels.shard_images`` images (default: about a
  million records per shard, ~30 MB at k=5), each one ``.npy`` file written atomically (temporary
  file, fsync, rename) and followed by a small ``.json`` with its length and sha256. Under torchrun,
  rank ``r`` of ``W`` makes shards ``r, r+W, r+2W...``; rank 0 then writes the final manifest.
- **Resume.** A killed generation, run again with the same config, keeps every shard whose file
  matches its ``.json`` and makes the others; the result is byte-identical to an uninterrupted run
  (batches never cross a shard, so a shard's bytes do not depend on what ran before it).
- **Identity.** The manifest records the teachers (names and a sha256 of their weights) and their
  config, the crop transform, k, R, the seed and a fingerprint of the dataset; a cache made for
  anything else is refused in one sentence before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from meal_lite.files import atomic_write, file_sha256, write_json
from meal_lite.config.schema import Config
from meal_lite.data.datasets import DatasetSplits, build_datasets
from meal_lite.training.distributed import DistributedContext, barrier, resolve_device
from meal_lite.core.ensemble import TeacherEnsemble
from meal_lite.training.assemble import build_student, seed_everything
from meal_lite.training.pipeline import build_teachers
from meal_lite.data.softlabels import (
    CACHE_FORMAT,
    MANIFEST_NAME,
    CacheError,
    CropSpec,
    base_item,
    check_identity,
    crop_spec,
    dataset_fingerprint,
    draw_crop,
    read_manifest,
    record_dtype,
    render_crop,
    teacher_config_identity,
)

__all__ = ["weights_sha256", "cache_identity", "default_shard_images", "generate_cache"]


def weights_sha256(model: nn.Module) -> str:
    """sha256 of a model's state dict (names, shapes, dtypes and bytes), to tell teachers apart."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def default_shard_images(crops: int) -> int:
    """Images per shard when ``soft_labels.shard_images`` is unset: about 2**20 records per shard."""
    return max(1, (1 << 20) // max(1, crops))


def cache_identity(cfg: Config, teachers: TeacherEnsemble, train: Dataset, spec: CropSpec, num_classes: int) -> dict:
    """Everything that makes two caches interchangeable (see the module docstring)."""
    sl = cfg.soft_labels
    return {
        "teachers": [{"name": n, "sha256": weights_sha256(t)} for n, t in zip(teachers.teacher_names, teachers.teachers)],
        "teacher_config": teacher_config_identity(cfg),
        "transform": spec.as_dict(),
        "top_k": int(sl.top_k),
        "crops": int(sl.crops),
        "seed": int(sl.seed),
        "num_classes": int(num_classes),
        "dataset": {"name": cfg.data.dataset, "images": len(train), "fingerprint": dataset_fingerprint(train)},  # type: ignore[arg-type]
        "shard_images": int(sl.shard_images or default_shard_images(sl.crops)),
    }


class _ShardCrops(Dataset):
    """The crops of images ``[first, last)``, rendered for the teachers: ``(pixels, box, flip)``."""

    def __init__(self, dataset: Dataset, spec: CropSpec, seed: int, crops: int, first: int, last: int) -> None:
        self.dataset, self.spec, self.seed, self.crops, self.first, self.last = dataset, spec, seed, crops, first, last

    def __len__(self) -> int:
        return (self.last - self.first) * self.crops

    def __getitem__(self, j: int):
        index, crop = self.first + j // self.crops, j % self.crops
        image, _ = base_item(self.dataset, index)
        box, flip = draw_crop(image, self.spec, self.seed, index, crop)
        return render_crop(image, box, flip, self.spec), torch.tensor(box, dtype=torch.int64), flip


def _shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.npy"


def _shard_done(path: Path, shard: int) -> dict | None:
    """The ``.json`` of a finished shard whose file matches it, else None (to be made again)."""
    side, file = path / (_shard_name(shard)[:-4] + ".json"), path / _shard_name(shard)
    if not (side.is_file() and file.is_file()):
        return None
    info = json.loads(side.read_text())
    return info if file.stat().st_size == info["bytes"] and file_sha256(file) == info["sha256"] else None


@torch.no_grad()
def _make_shard(
    path: Path, shard: int, identity: dict, train: Dataset, teachers: TeacherEnsemble, spec: CropSpec,
    cfg: Config, device: torch.device, on_batch: Callable | None,
) -> dict:
    """Render, label and store one shard; returns its ``.json`` (records, bytes, sha256, tail mass)."""
    sl, per = cfg.soft_labels, identity["shard_images"]
    first, last = shard * per, min((shard + 1) * per, len(train))  # type: ignore[arg-type]
    crops = _ShardCrops(train, spec, sl.seed, sl.crops, first, last)
    records = np.zeros(len(crops), dtype=record_dtype(sl.top_k, identity["num_classes"]))
    loader = DataLoader(crops, batch_size=sl.batch_size, shuffle=False, num_workers=cfg.data.num_workers,
                        pin_memory=device.type == "cuda")
    start, tail = 0, []
    for pixels, boxes, flips in loader:
        probs = teachers(pixels.to(device, non_blocking=True)).probs.float()
        top = probs.topk(sl.top_k, dim=1)
        rows = slice(start, start + len(pixels))
        records["box"][rows] = boxes.numpy()
        records["flip"][rows] = flips.numpy()
        records["prob"][rows] = top.values.cpu().numpy().astype(np.float16)
        records["cls"][rows] = top.indices.cpu().numpy()
        tail.append((1.0 - top.values.sum(1)).clamp_min(0).cpu())
        if on_batch is not None:
            on_batch(pixels, probs.cpu())
        start += len(pixels)
    file = path / _shard_name(shard)
    atomic_write(file, lambda handle: np.save(handle, records, allow_pickle=False))
    tails = torch.cat(tail) if tail else torch.zeros(0)
    info = {"file": file.name, "records": len(records), "bytes": file.stat().st_size, "sha256": file_sha256(file),
            "tail_sum": float(tails.double().sum()), "tail_max": float(tails.max()) if len(tails) else 0.0}
    write_json(path / (file.name[:-4] + ".json"), info)
    return info


def _finish(path: Path, manifest: dict, num_shards: int) -> dict:
    shards = [_shard_done(path, s) for s in range(num_shards)]
    missing = [_shard_name(s) for s, info in enumerate(shards) if info is None]
    if missing:
        raise CacheError(
            f"Soft-label shard(s) {', '.join(missing[:3])} in '{path}' are missing after generation; run "
            f"`meal-lite cache` with the same config again to make them."
        )
    records = sum(info["records"] for info in shards)  # type: ignore[index]
    manifest.update(
        complete=True, shards=shards, records=records,
        tail_mass_mean=sum(info["tail_sum"] for info in shards) / max(records, 1),  # type: ignore[index]
        tail_mass_max=max((info["tail_max"] for info in shards), default=0.0),  # type: ignore[index]
    )
    write_json(path / MANIFEST_NAME, manifest)
    return manifest


def generate_cache(
    cfg: Config,
    *,
    datasets: DatasetSplits | None = None,
    teachers: TeacherEnsemble | None = None,
    ctx: DistributedContext | None = None,
    max_shards: int | None = None,
    on_batch: Callable | None = None,
    verbose: bool = True,
) -> dict:
    """Make (or finish) the cache at ``cfg.soft_labels.path``; returns the manifest.

    ``datasets``/``teachers`` default to the run's (built from ``cfg``). ``ctx`` gives the rank and
    world size (torchrun). ``max_shards`` stops after making that many shards in this call (the rest
    on the next call: what a killed generation leaves). ``on_batch(pixels, probs)`` sees every batch
    the teachers label (tests use it). Refuses a folder holding a cache made for something else.
    """
    if not cfg.soft_labels.path:
        raise CacheError("Set soft_labels.path to the folder the soft-label cache should go to, e.g. soft_labels.path=runs/cache.")
    started = time.perf_counter()
    path = Path(cfg.soft_labels.path)
    if path.exists() and not path.is_dir():
        raise CacheError(f"soft_labels.path '{path}' is a file, not a folder; point soft_labels.path at a new or existing cache folder.")
    ctx = ctx or DistributedContext(device=resolve_device(cfg.train.device))
    if datasets is None:
        seed_everything(cfg.train.seed)
        _, data_config = build_student(cfg)
        datasets = build_datasets(cfg.data, data_config)
    train = datasets["train"]
    if not 1 <= cfg.soft_labels.top_k <= datasets.num_classes:
        raise CacheError(f"soft_labels.top_k must be between 1 and the {datasets.num_classes} classes, but was given {cfg.soft_labels.top_k}.")
    spec = crop_spec(train, datasets.data_config)
    stored = read_manifest(path)  # before the teachers are built: a wrong folder fails fast
    if stored is not None and stored.get("format") != CACHE_FORMAT:
        raise CacheError(f"'{path}' holds a soft-label cache of format {stored.get('format')!r}; choose another soft_labels.path.")
    if teachers is None:
        teachers = build_teachers(cfg, datasets.num_classes, datasets.data_config, verbose=verbose)
    teachers = teachers.to(ctx.device).eval()
    identity = cache_identity(cfg, teachers, train, spec, datasets.num_classes)
    if stored is not None:
        check_identity(stored["identity"], identity, path)
        if stored.get("complete"):
            return stored
    num_shards = -(-len(train) // identity["shard_images"])  # type: ignore[arg-type]
    manifest = {"format": CACHE_FORMAT, "identity": identity, "num_images": len(train), "num_shards": num_shards,  # type: ignore[arg-type]
                "shard_images": identity["shard_images"], "bytes_per_crop": record_dtype(cfg.soft_labels.top_k, datasets.num_classes).itemsize,
                "complete": False}
    path.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        for leftover in path.glob("*.tmp-*"):  # half-written files of a killed run (no rank writes yet)
            leftover.unlink()
        write_json(path / MANIFEST_NAME, manifest)
    barrier()
    made = 0
    for shard in range(ctx.rank, num_shards, ctx.world_size):
        if _shard_done(path, shard) is not None:
            continue
        if max_shards is not None and made >= max_shards:
            return manifest
        info = _make_shard(path, shard, identity, train, teachers, spec, cfg, ctx.device, on_batch)
        made += 1
        if verbose and ctx.is_main:
            print(f"shard {shard + 1}/{num_shards}: {info['records']} crops, {info['bytes']} bytes", flush=True)
    barrier()
    if not ctx.is_main:
        return manifest
    manifest = _finish(path, manifest, num_shards)
    manifest["seconds"] = time.perf_counter() - started
    return manifest
