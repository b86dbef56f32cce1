"""Write the repository's address, from its one home in _config.yml, into every place that repeats it.

The address of the repository is written once, as ``repository.url`` and ``repository.branch`` in
``_config.yml``: Jupyter Book's launch and repository buttons read it there. Two other places need the
same address and cannot read a YAML file at the moment they need it: the first cell of every chapter,
which installs meal-lite when the notebook runs in Colab (where nothing of the repository exists yet),
and the package's own metadata (``[project.urls]`` in ``pyproject.toml``). This script rewrites both
from ``_config.yml``; ``tests/test_publishing.py`` fails, naming this script, when they disagree.

    python scripts/sync_install_cells.py          # after changing repository.url or repository.branch
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GUARD = 'if "google.colab" in sys.modules:'


def repository(root: Path = ROOT) -> tuple[str, str]:
    """``(url, branch)`` from ``root``'s _config.yml."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))["repository"]
    return config["url"].rstrip("/"), config.get("branch", "main")


def install_cell(url: str, branch: str) -> list[str]:
    """The source lines of a chapter's first cell: install meal-lite from ``url@branch``, in Colab only."""
    return [
        "import sys\n",
        f"{GUARD}  # the address is _config.yml's repository (scripts/sync_install_cells.py)\n",
        f'    %pip install -q "meal-lite @ git+{url}@{branch}"',
    ]


def sync(root: Path = ROOT) -> list[Path]:
    """Rewrite the install cells and pyproject's URLs; return the files that changed."""
    url, branch = repository(root)
    changed = []
    for path in sorted((root / "book").glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        first["source"] = install_cell(url, branch)
        new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    new = re.sub(r'(?m)^Repository = "[^"]*"$', f'Repository = "{url}"', text)
    if new != text:
        pyproject.write_text(new, encoding="utf-8")
        changed.append(pyproject)
    return changed


if __name__ == "__main__":
    for path in sync():
        print("updated", path.relative_to(ROOT))
    sys.exit(0)
