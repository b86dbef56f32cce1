"""One-thread worker processes: the teachers and the protocol's seeds trained in a pool are bit-identical
to the same trainings run in this process with one thread, and the worker count is resolved clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from meal_lite.errors import ConfigError
from meal_lite.experiments.protocol import Experiment, base_config, prepare_experiment, run_protocol
from meal_lite.experiments.protocol_settings import ProtocolSettings
from meal_lite.training.digits_teachers import digits_ensemble
from meal_lite.training.workers import WORKERS_ENV_VAR, one_thread, resolve_workers

def test_worker_count_from_argument_environment_and_device(monkeypatch):
    monkeypatch.delenv(WORKERS_ENV_VAR, raising=False)
    assert resolve_workers(None, "cuda") == 1
    assert resolve_workers(3, "cpu") == 3
    monkeypatch.setenv(WORKERS_ENV_VAR, "1")
    assert resolve_workers(None, "cpu") == 1 and resolve_workers(2, "cpu") == 2  # the argument wins
    monkeypatch.setenv(WORKERS_ENV_VAR, "two")
    with pytest.raises(ConfigError, match="MEAL_LITE_WORKERS='two' is not a whole number"):
        resolve_workers(None, "cpu")
    with pytest.raises(ConfigError, match="workers=2 is possible only on a CPU, and this run is on cuda; use 1"):
        resolve_workers(2, "cuda")
    with pytest.raises(ConfigError, match="workers=0"):
        resolve_workers(0, "cpu")


def test_one_thread_restores_the_thread_count():
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_teachers_trained_in_workers_equal_teachers_trained_here(trained_tiny_cache, tiny_recipes, tmp_path):
    pooled = digits_ensemble(recipes=tiny_recipes, cache_dir=tmp_path / "pooled", verbose=False, workers=2)
    here = digits_ensemble(recipes=tiny_recipes, cache_dir=trained_tiny_cache, verbose=False, workers=1)
    for (name, a), (_, b) in zip(pooled.members().items(), here.members().items()):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), f"teacher {name} differs between a worker and this process"
    # the same teacher files (the shared cache may also hold baselines that other tests kept there)
    assert sorted(p.name for p in (tmp_path / "pooled").iterdir()) == sorted(p.name for p in trained_tiny_cache.glob("digits-*.pt"))


def test_protocol_seeds_in_workers_equal_seeds_trained_here(tiny_teachers):
    experiment = Experiment(base_config("offline", ["train.limit_batches=4"]), verbose=False)
    # One seed is two tasks (its ce row; its kl and meal rows, which share the teachers' outputs): one per worker.
    settings = ProtocolSettings(seeds=1, baseline_epochs=1, distill_epochs=1, lrs={"ce": 0.003, "kl": 0.003, "meal": 0.003})
    here = run_protocol(experiment, settings, workers=1)  # trains with one thread, as a worker does
    pooled = run_protocol(experiment, settings, workers=2)
    assert (here["hardware"]["workers"], pooled["hardware"]["workers"]) == (1, 2)
    assert pooled["rows"] == here["rows"]
    assert pooled["paired_differences"] == here["paired_differences"]
    assert pooled["curves"] == here["curves"]
    # What each student inherited is measured here, with this process's thread count: equal up to float order.
    for row, measures in here["inherited"].items():
        for name, summary in measures.items():
            assert pooled["inherited"][row][name]["values"] == pytest.approx(summary["values"], rel=1e-5, abs=1e-6), (row, name)
    assert len(pooled["rows"]["meal"]["values"]) == 1 and set(pooled["rows"]) >= {"ce", "kl", "meal"}


PARENT = """
import time
from meal_lite.training.workers import cpu_pool
with cpu_pool(2) as pool:
    futures = [pool.submit(time.sleep, 120) for _ in range(2)]
    time.sleep(3)
    print(" ".join(str(p) for p in pool._processes), flush=True)
    time.sleep(120)
"""


def test_workers_stop_when_their_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2
        os.kill(parent.pid, signal.SIGKILL)  # no clean shutdown: the pool cannot tell its workers
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "a worker kept running after its parent was killed"
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_baseline_trained_beside_the_teachers_equals_the_one_trained_here(empty_tiny_teachers):
    # An empty cache: the teachers train beside the baseline.
    cfg = base_config("offline", ["train.limit_batches=4"])
    settings = ProtocolSettings(seeds=1, baseline_epochs=2)
    beside = prepare_experiment(cfg, settings, verbose=False, workers=2)  # teachers trained meanwhile
    assert len(list(empty_tiny_teachers.glob("digits-*.pt"))) == 2
    assert len(list(empty_tiny_teachers.glob("baseline-*.pt"))) == 1  # the worker kept it in the cache folder
    fresh = Experiment(cfg, verbose=False)
    fresh.cache_baselines = False  # trained here, not read back from the cache
    here, _ = fresh.baseline(settings, 0)
    model, history = beside.baseline(settings, 3)  # a shared baseline: every seed gets seed 0's
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), here.state_dict().values()))
    assert len(history) == 2
