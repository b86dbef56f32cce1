"""Environment variables: read in one module only, documented in the README, bad values in one sentence."""

import ast
import re
from pathlib import Path

import pytest

from meal_lite import settings
from meal_lite.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_no_module_but_settings_reads_the_environment():
    readers = []
    for path in sorted((ROOT / "meal_lite").rglob("*.py")):
        if path.name == "settings.py" and path.parent.name == "meal_lite":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert readers == []


def test_the_readme_documents_every_variable_settings_reads():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Environment variables"):]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Za-z0-9_]+)`", cell)}
    assert documented == set(settings.VARIABLES)


@pytest.mark.parametrize(
    "name, value, read, expected",
    [
        ("MEAL_LITE_WORKERS", "two", settings.workers, r"^Environment variable MEAL_LITE_WORKERS='two' is not a whole number; set it to e\.g\. 1 or 2\.$"),
        ("MEAL_LITE_WORKERS", "0", settings.workers, r"^Environment variable MEAL_LITE_WORKERS='0' is below 1; set it"),
        ("MEAL_LITE_PROBE_TIMEOUT", "soon", settings.probe_timeout, r"^Environment variable MEAL_LITE_PROBE_TIMEOUT='soon' is not a positive number of seconds"),
        ("MEAL_LITE_PROBE_TIMEOUT", "-1", settings.probe_timeout, r"MEAL_LITE_PROBE_TIMEOUT='-1' is not a positive number"),
        ("WORLD_SIZE", "x", settings.torchrun_env, r"^Environment variable WORLD_SIZE='x' is not a whole number; set it to e\.g\. 2 \(torchrun sets it\)\.$"),
        ("MEAL_LITE_KILL_AT_STEP", "seven", settings.fault_drill, r"MEAL_LITE_KILL_AT_STEP='seven' is not a whole number"),
        ("MEAL_LITE_DATA_HOME", "data", settings.data_home, r"^Environment variable MEAL_LITE_DATA_HOME='data' is not an absolute path; set it to e\.g\. /"),
    ],
)
def test_a_bad_value_is_one_sentence_when_read(monkeypatch, name, value, read, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=expected) as info:
        read()
    message = str(info.value)
    assert "\n" not in message and message.endswith(".") and not re.search(r"\.\s+[A-Z]", message)  # one sentence


def test_values_as_read(monkeypatch, tmp_path):
    for name in settings.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert settings.workers() is None and settings.probe_timeout() == 3.0 and settings.cache_dir() is None
    assert settings.data_home() is None
    assert settings.torchrun_env() == settings.TorchrunEnv(1, 0, 0, 0) and settings.fault_drill() is None
    assert not settings.hub_offline() and not settings.behind_proxy()
    monkeypatch.setenv("MEAL_LITE_WORKERS", "3")
    monkeypatch.setenv("MEAL_LITE_PROBE_TIMEOUT", "0.5")
    monkeypatch.setenv("MEAL_LITE_CACHE", "~/teachers")
    monkeypatch.setenv("MEAL_LITE_DATA_HOME", "~/meal-lite-data")
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("MEAL_LITE_KILL_AT_STEP", "7")
    assert settings.workers() == 3 and settings.probe_timeout() == 0.5
    assert settings.cache_dir() == Path("~/teachers").expanduser()
    assert settings.data_home() == Path("~/meal-lite-data").expanduser()
    assert settings.hub_offline()
    assert settings.torchrun_env().world_size == 4
    assert settings.fault_drill() == (7, 1)  # under torchrun with 2+ workers the drill kills rank 1 by default
    monkeypatch.setenv("MEAL_LITE_KILL_RANK", "0")
    assert settings.fault_drill() == (7, 0)


def test_a_relative_data_root_is_resolved_against_the_data_home(monkeypatch, tmp_path):
    """Kernels started in different folders share one copy of the data; an absolute data.root stays as it is."""
    from meal_lite.data import resolve_data_root

    monkeypatch.setenv("MEAL_LITE_DATA_HOME", str(tmp_path))
    assert resolve_data_root("data") == tmp_path / "data"
    assert resolve_data_root(tmp_path / "elsewhere") == tmp_path / "elsewhere"
