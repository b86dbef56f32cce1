"""Shared test setup: no network, ever, and a quiet, small torch."""

import os

# Set before timm / huggingface_hub are imported anywhere, so a stray pretrained=True fails at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MEAL_LITE_PROFILE", "offline")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _trainings_in_this_process(monkeypatch):
    """Unit tests train tiny models: a pool's start-up would cost more than it saves. Tests of the pool
    (tests/test_workers.py, the dark-knowledge pool test) ask for workers explicitly; the chapters, run by
    nbval outside this folder, keep the default."""
    monkeypatch.setenv("MEAL_LITE_WORKERS", "1")
