"""The protocol's shared baseline: trained once, kept in the cache folder, read back bit for bit."""

import copy

import pytest
import torch

from meal_lite.experiments import Experiment, ProtocolSettings, base_config, baseline_path, run_config

SETTINGS = ProtocolSettings(seeds=1, baseline_epochs=1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEAL_LITE_CACHE", str(tmp_path))
    return tmp_path


def test_a_baseline_is_trained_once_then_read_back_bit_for_bit(cache):
    cfg = base_config("offline", ["train.limit_batches=2"])
    trained, history = Experiment(cfg, verbose=False, teachers=False).baseline(SETTINGS, 0)
    stored = list(cache.glob("baseline-*.pt"))
    assert len(stored) == 1

    again = Experiment(cfg, verbose=False, teachers=False)
    again.train = lambda *a, **k: pytest.fail("the stored baseline was trained again")
    read, read_history = again.baseline(SETTINGS, 0)
    assert read_history == history
    assert all(torch.equal(a, b) for a, b in zip(read.state_dict().values(), trained.state_dict().values()))


def test_without_the_cache_nothing_is_stored(cache):
    experiment = Experiment(base_config("offline", ["train.limit_batches=1"]), verbose=False, teachers=False)
    experiment.cache_baselines = False
    experiment.baseline(SETTINGS, 0)
    assert not list(cache.iterdir())


def test_the_key_follows_what_shapes_the_weights_and_nothing_else(cache):
    cfg = run_config(base_config("offline"), objective="ce", epochs=2, lr=0.05, seed=0)
    path = baseline_path(cfg, "cpu")
    quiet = copy.deepcopy(cfg)
    quiet.train.out, quiet.train.progress, quiet.data.num_workers = "elsewhere", True, 3
    assert baseline_path(quiet, "cpu") == path  # where a run writes, how it reports, who decodes: same weights
    assert path.parent == cache and path.name.startswith(f"baseline-{cfg.student.name}-")
    for change in ("lr", "epochs", "seed"):
        other = run_config(base_config("offline"), objective="ce", **{"epochs": 2, "lr": 0.05, "seed": 0, change: 3})
        assert baseline_path(other, "cpu") != path, change
    assert baseline_path(cfg, "cuda") != path  # a GPU trains other weights
