"""Shared test setup: no network, ever, and a quiet, small torch."""

import os

# Set before timm / huggingface_hub are imported anywhere, so a stray pretrained=True fails at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MEAL_LITE_PROFILE", "offline")
