"""The paper's ImageNet table as packaged configurations: one YAML file per row, shipped inside meal_lite.

They live in ``meal_lite/config/imagenet/`` so that an installed package (a wheel, Colab) has them as
well as a clone: chapter 7 reads them from here, and ``meal-lite train imagenet/resnet50-224`` finds one
by name wherever it runs. In a clone ``configs/imagenet`` is a link to this folder, so the commands in
the files' headers work there as written.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PAPER_CONFIG_DIR", "paper_configs", "packaged_config"]

#: The folder of the paper's configurations inside the installed package.
PAPER_CONFIG_DIR = Path(__file__).with_name("imagenet")


def paper_configs() -> list[Path]:
    """The paper's configurations, one per row of its ImageNet table, sorted by file name."""
    return sorted(PAPER_CONFIG_DIR.glob("*.yaml"))


def packaged_config(name: str | Path) -> Path | None:
    """The packaged configuration called ``name`` (``imagenet/resnet50-224``, ``.yaml`` optional), or None."""
    parts = Path(name).with_suffix(".yaml").parts if Path(name).suffix in ("", ".yaml") else ()
    if len(parts) != 2 or parts[0] != PAPER_CONFIG_DIR.name:
        return None
    path = PAPER_CONFIG_DIR / parts[1]
    return path if path.is_file() else None
