"""Cached soft labels: replayed crops are the teachers' pixels, targets match the online ensemble,
top-k error stays within its bound, generation resumes byte for byte, bad caches are refused in one
sentence, and training from a cache resumes bit-identically."""

import copy
import json
from pathlib import Path

import pytest
import torch

from meal_lite import cli
from meal_lite.config.schema import Config, load_config
from meal_lite.data.datasets import build_datasets
from meal_lite.training.distributed import DistributedContext
from meal_lite.core.ensemble import TeacherEnsemble
from meal_lite.errors import ConfigError
from meal_lite.training.assemble import train_student
from meal_lite.training.softlabel_cache import generate_cache
from meal_lite.data.softlabels import (
    CacheError,
    CachedCrops,
    CachedSoftLabels,
    SoftLabelCache,
    rebuild_targets,
    replay_cache,
    topk_error_bound,
)
from tiny_run import KillAfter, TinyNet, write_tiny_digits_config

CLASSES = 10


def tiny_teachers(seed: int = 0) -> TeacherEnsemble:
    torch.manual_seed(seed)
    return TeacherEnsemble([TinyNet(CLASSES), TinyNet(CLASSES)]).eval()


def cache_config(path, **soft_labels) -> Config:
    """Digits at 8 px (TinyNet's input), 2 crops per image, 300 images per shard (4 shards)."""
    cfg = Config(profile="offline", teacher_preset="digits")
    cfg.data.dataset, cfg.data.image_size, cfg.data.batch_size, cfg.data.num_workers = "digits", 8, 16, 0
    cfg.student.pretrained = False
    cfg.discriminator.input = "probs"
    cfg.train.device, cfg.train.progress = "cpu", False
    cfg.soft_labels.path, cfg.soft_labels.crops, cfg.soft_labels.shard_images = str(path), 2, 300
    for key, value in soft_labels.items():
        setattr(cfg.soft_labels, key, value)
    return cfg


@pytest.fixture(scope="module")
def digits8():
    return build_datasets(cache_config("unused").data)


def make(cfg, datasets, teachers=None, **kwargs):
    return generate_cache(cfg, datasets=datasets, teachers=teachers or tiny_teachers(), verbose=False, **kwargs)


def folder_bytes(path: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_replayed_crops_are_the_pixels_the_teachers_saw(tmp_path, digits8):
    seen = []
    make(cache_config(tmp_path), digits8, on_batch=lambda pixels, probs: seen.append(pixels))
    seen = torch.cat(seen)  # record order: image i, crop r -> row 2 i + r
    cache = SoftLabelCache(tmp_path)
    replay = CachedCrops(digits8["train"], cache)
    assert len(seen) == 2 * len(replay) == len(cache)
    for index in (0, 1, 299, 300, 777, len(replay) - 1):
        for epoch in range(4):  # epoch e replays crop e mod 2
            pixels, label, probs, classes = replay.view(index, epoch)
            assert torch.equal(pixels, seen[2 * index + epoch % 2])
            assert label == digits8["train"].targets[index] and probs.shape == classes.shape == (5,)
    # Different stored crops really differ (a crop is not the whole image each time).
    assert not torch.equal(replay.view(0, 0)[0], replay.view(0, 1)[0])


def test_full_k_targets_equal_the_online_ensemble_on_the_replayed_crops(tmp_path, digits8):
    teachers = tiny_teachers()
    make(cache_config(tmp_path, top_k=CLASSES), digits8, teachers)
    replay = CachedCrops(digits8["train"], SoftLabelCache(tmp_path))
    batch = [torch.stack(x) if isinstance(x[0], torch.Tensor) else torch.tensor(x)
             for x in zip(*[replay.view(i, 1) for i in range(0, 1000, 37)])]
    target = CachedSoftLabels(CLASSES).targets(batch[0], batch).probs
    online = teachers(batch[0]).probs
    torch.testing.assert_close(target, online, rtol=0, atol=2**-10)
    assert (target - online).abs().max() > 0  # really read from float16, not recomputed


def test_topk_error_is_within_the_documented_bound(tmp_path, digits8):
    teachers = tiny_teachers()
    make(cache_config(tmp_path / "full", top_k=CLASSES), digits8, teachers)
    replay = CachedCrops(digits8["train"], SoftLabelCache(tmp_path / "full"))
    images = torch.stack([replay.view(i, 0)[0] for i in range(0, 1097, 5)])
    full = teachers(images).probs
    mean_errors, mean_bounds = [], []
    for k in (1, 2, 3, 5, 8, CLASSES):
        top = full.topk(k, dim=1)
        probs = top.values.half()  # what the cache stores
        error = (rebuild_targets(probs.float(), top.indices, CLASSES) - full).abs().sum(1)
        bound = topk_error_bound(probs)
        assert (error <= bound).all(), f"k={k}: {error.max():.4g} > bound"
        tail = 1 - top.values.sum(1)
        assert (tail <= (CLASSES - k) * top.values[:, -1] + 1e-6).all()  # m <= (C - k) p_(k)
        mean_errors.append(error.mean().item())
        mean_bounds.append(bound.mean().item())
    assert mean_bounds == sorted(mean_bounds, reverse=True) and mean_errors[0] > 10 * mean_errors[-1]
    assert mean_errors[-1] < 2**-10
    # The stored records obey the same bound (top-5 cache, same teachers, same crops).
    make(cache_config(tmp_path / "k5"), digits8, teachers)
    k5 = CachedCrops(digits8["train"], SoftLabelCache(tmp_path / "k5"))
    items = [k5.view(i, 0) for i in range(0, 1097, 5)]
    probs, classes = torch.stack([x[2] for x in items]), torch.stack([x[3] for x in items])
    assert ((rebuild_targets(probs, classes, CLASSES) - full).abs().sum(1) <= topk_error_bound(probs)).all()


def test_killed_generation_resumes_to_the_same_bytes(tmp_path, digits8):
    straight = tmp_path / "straight"
    make(cache_config(straight), digits8)

    killed = tmp_path / "killed"
    partial = make(cache_config(killed), digits8, max_shards=2)
    assert not partial["complete"] and json.loads((killed / "manifest.json").read_text())["complete"] is False
    with pytest.raises(CacheError, match="unfinished"):
        SoftLabelCache(killed)
    (killed / "shard-00002.npy.tmp-99999").write_bytes(b"half a shard")  # what a kill mid-write leaves
    kept = {name: (killed / name).stat().st_mtime_ns for name in ("shard-00000.npy", "shard-00001.npy")}
    make(cache_config(killed), digits8)
    assert {name: (killed / name).stat().st_mtime_ns for name in kept} == kept  # not made again
    assert folder_bytes(killed) == folder_bytes(straight)

    # Two ranks (rank r makes shards r, r+2, ...; rank 0 writes the manifest last): the same bytes again.
    sharded = tmp_path / "sharded"
    for rank in (1, 0):
        make(cache_config(sharded), digits8, ctx=DistributedContext(rank=rank, world_size=2))
    assert folder_bytes(sharded) == folder_bytes(straight)


def test_a_cache_made_for_something_else_is_refused(tmp_path, digits8):
    make(cache_config(tmp_path), digits8)
    with pytest.raises(CacheError, match=r"^The soft-label cache at .* made with seed = 0, but this run has 1; point soft_labels.path"):
        make(cache_config(tmp_path, seed=1), digits8)
    with pytest.raises(CacheError, match="made with a different teachers from this run's"):
        make(cache_config(tmp_path), digits8, tiny_teachers(seed=5))
    with pytest.raises(CacheError, match="made with top k = 5, but this run has 3"):
        replay_cache(cache_config(tmp_path, top_k=3), digits8)
    other = cache_config(tmp_path)
    other.data.image_size = 16
    with pytest.raises(CacheError, match="made with a different transform from this run's"):
        replay_cache(other, build_datasets(other.data))
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(CacheError, match=r"^soft_labels.path '.*a_file' is a file, not a folder; point soft_labels.path"):
        make(cache_config(tmp_path / "a_file"), digits8)
    datasets, source = replay_cache(cache_config(tmp_path), digits8)  # the matching run is accepted
    assert isinstance(datasets["train"], CachedCrops) and source.num_classes == CLASSES


def test_truncated_corrupt_and_missing_caches_are_named(tmp_path, digits8):
    with pytest.raises(CacheError, match=r"^There is no soft-label cache at '.*nothing' \(no manifest.json\); make it with"):
        SoftLabelCache(tmp_path / "nothing")
    make(cache_config(tmp_path), digits8)
    shard = tmp_path / "shard-00001.npy"
    data = shard.read_bytes()
    shard.write_bytes(data[:-7])
    with pytest.raises(CacheError, match=r"shard '.*shard-00001.npy' is truncated .*regenerate it"):
        SoftLabelCache(tmp_path)
    shard.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CacheError, match=r"shard-00001.npy' is corrupt"):
        SoftLabelCache(tmp_path)
    shard.unlink()
    with pytest.raises(CacheError, match=r"shard-00001.npy' is missing"):
        SoftLabelCache(tmp_path)
    # Deleting the damaged shard and running again repairs the cache.
    (tmp_path / "shard-00001.json").unlink()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["complete"] = False
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    make(cache_config(tmp_path), digits8)
    assert len(SoftLabelCache(tmp_path)) == 2194


def test_a_cached_meal_run_needs_the_probability_discriminator():
    with pytest.raises(ConfigError, match="set discriminator.input=probs"):
        load_config(None, ["soft_labels.path=somewhere", "loss.objective=meal"], profile="offline")


def train_from_cache(cfg, datasets, out_dir, callbacks=()):
    torch.manual_seed(0)
    student = TinyNet(CLASSES)
    cached, source = replay_cache(cfg, datasets)
    return train_student(cfg, cached, teacher_source=source, student=student, val_loader=None, out_dir=out_dir,
                         callbacks=callbacks)


def test_training_from_a_cache_resumes_bit_identically(tmp_path, digits8):
    cfg = cache_config(tmp_path / "cache")
    make(cfg, digits8)
    cfg.train.epochs, cfg.train.limit_batches, cfg.optim.milestones = 4, 3, [3]
    straight, history = train_from_cache(cfg, digits8, tmp_path / "straight")
    assert len(history) == 4 and history[0]["disc_acc"] is not None
    with pytest.raises(KeyboardInterrupt):
        train_from_cache(cfg, digits8, tmp_path / "resumed", callbacks=[KillAfter(2)])
    again = copy.deepcopy(cfg)
    again.train.resume = True
    resumed, history = train_from_cache(again, digits8, tmp_path / "resumed")
    assert [m["epoch"] for m in history] == [3, 4]
    for name in ("student", "discriminator"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[key], b[key]) for key in a), name
    assert not torch.equal(straight.student.head.weight, TinyNet(CLASSES).head.weight)


def run_cli(capsys, *args):
    """``meal-lite ARGS`` in this process (tests/test_cli.py runs the console script itself): exit code, stdout, stderr."""
    code = cli.main([str(a) for a in args])
    printed = capsys.readouterr()
    return code, printed.out, printed.err


def test_cli_makes_a_cache_and_trains_from_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # train.out=other below is relative
    config = write_tiny_digits_config(tmp_path, out=tmp_path / "run")
    keys = [f"soft_labels.path={tmp_path / 'cache'}", "soft_labels.crops=1", "discriminator.input=probs"]
    code, out, err = run_cli(capsys, "cache", config, *keys)
    assert code == 0, err
    assert "1097 images x 1 crops = 1097 records, 29 bytes per crop" in out
    code, out, err = run_cli(capsys, "train", config, *keys)
    assert code == 0, err
    assert (tmp_path / "run" / "last.pt").is_file()
    code, out, err = run_cli(capsys, "train", config, *keys[:1], "soft_labels.crops=4", "discriminator.input=probs", "train.out=other")
    assert code == 2 and err.startswith("error: The soft-label cache at")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "other").exists()
