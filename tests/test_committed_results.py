"""The committed full runs ship inside the package and load by name, with the record of how they were made.

The chapters show these runs to every reader, including one with nothing but the installed wheel, so
each must resolve through :func:`meal_lite.experiments.committed_result` and carry its provenance.
"""

from __future__ import annotations

from importlib.resources import files

import pytest

from book_utils import REPO_ROOT
from meal_lite.errors import ConfigError
from meal_lite.experiments import committed_result, read_dark_knowledge_results, read_demo_results

NAMES = ("cache_accuracy", "dark_knowledge", "demo", "evidence_search")
FOLDER = files("meal_lite.experiments") / "results"


@pytest.mark.parametrize("name", NAMES)
def test_every_committed_result_loads_with_how_it_was_made(name):
    result = committed_result(name)
    if name in ("demo", "dark_knowledge"):    # a command's results.json: provenance in its details
        made = result["details"]
        assert made["command"].startswith(f"meal-lite {name.replace('_', '-')}")
        assert made["date"][:2] == "20" and {"cpus", "torch", "device"} <= set(made["hardware"])
    elif name == "cache_accuracy":            # bench/cache_accuracy.py: the hardware at the top level
        assert {"cpus", "torch"} <= set(result["hardware"]) and result["settings"]["seeds"] >= 1
    else:                                     # the validation search log: one record per configuration
        assert isinstance(result, list) and result
        assert all(record["split"] == "val" for record in result)   # the search never read the test split


def test_the_committed_results_are_exactly_the_four_package_files_and_have_one_home():
    assert sorted(p.name for p in FOLDER.iterdir() if p.name.endswith(".json")) == [f"{n}.json" for n in NAMES]
    left_behind = ["book/results/demo.json", "book/results/dark_knowledge.json", "bench/evidence_search.json",
                   "bench/cache_accuracy.json"]
    assert [p for p in left_behind if (REPO_ROOT / p).exists()] == []


def test_an_unknown_name_is_one_sentence_naming_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        committed_result("demos")
    message = str(caught.value)
    assert "'demos'" in message and all(name in message for name in NAMES)
    assert message.count(".") == 1 and message.endswith(".") and "\n" not in message


def test_the_book_readers_take_a_loaded_result_as_they_take_its_file():
    assert read_demo_results(committed_result("demo")) == read_demo_results(FOLDER / "demo.json")
    dark = read_dark_knowledge_results(committed_result("dark_knowledge"))
    assert dark == read_dark_knowledge_results(FOLDER / "dark_knowledge.json")
    assert set(dark["rows"]) == set(dark["settings"]["arms"])
