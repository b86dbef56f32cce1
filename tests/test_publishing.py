"""The book's website: the system diagram in the intro and the GitHub Pages workflow that publishes it.

Fast (no kernel, no build): runs the diagram script once and reads YAML and Markdown.
"""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
import xml.etree.ElementTree as ET

import yaml

from book_utils import BOOK_DIR, REPO_ROOT

FIGURES = BOOK_DIR / "figures"
DIAGRAM_SCRIPT = FIGURES / "make_system_diagram.py"
DIAGRAM = FIGURES / "system.svg"
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "book.yml"
SVG = "{http://www.w3.org/2000/svg}"

# The parts of the system the intro promises the reader, as they must appear in the drawing.
LABELS = ["teacher 1", "teacher K", "mean softmax", "mean logits", "KL loss", "discriminator", "student", "total loss"]


def svg_structure(path):
    """What the drawing says and how much it draws: its texts in order and its count of each element."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg", f"{path} is not an SVG document"
    texts = ["".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")]
    counts = {}
    for element in root.iter():
        counts[element.tag] = counts.get(element.tag, 0) + 1
    return texts, counts


def test_diagram_script_reproduces_the_committed_svg(tmp_path):
    out = tmp_path / "system.svg"
    subprocess.run([sys.executable, str(DIAGRAM_SCRIPT), str(out)], check=True, cwd=tmp_path, timeout=120)
    texts, counts = svg_structure(out)
    for label in LABELS:
        assert label in texts, f"the diagram lacks the label {label!r}"
    committed_texts, committed_counts = svg_structure(DIAGRAM)
    assert committed_texts == texts, "book/figures/system.svg is stale: rerun book/figures/make_system_diagram.py"
    assert committed_counts == counts, "book/figures/system.svg is stale: rerun book/figures/make_system_diagram.py"


def test_diagram_is_deterministic(tmp_path):
    main = runpy.run_path(str(DIAGRAM_SCRIPT))["main"]
    first, second = main([str(tmp_path / "a.svg")]), main([str(tmp_path / "b.svg")])
    assert first.read_bytes() == second.read_bytes()


def test_intro_shows_the_diagram_with_a_caption():
    intro = (BOOK_DIR / "intro.md").read_text(encoding="utf-8")
    match = re.search(r"```\{figure\} (\S+)\n(.*?)```", intro, re.S)
    assert match, "intro.md has no {figure} directive"
    assert (BOOK_DIR / match.group(1)).resolve() == DIAGRAM.resolve()
    body = [line for line in match.group(2).splitlines() if line.strip() and not line.startswith(":")]
    assert body, "the diagram has no caption"


def load_workflow():
    text = WORKFLOW.read_text(encoding="utf-8")
    workflow = yaml.safe_load(text)
    # YAML 1.1 reads the bare key `on` as the boolean True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps_of(workflow):
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def uses(step):
    return step.get("uses", "").split("@")[0]


def test_workflow_builds_the_book_on_push_to_main():
    workflow = load_workflow()
    assert "main" in workflow["on"]["push"]["branches"]
    build = workflow["jobs"]["build"]
    assert build["env"]["MEAL_LITE_PROFILE"] == "offline"
    steps = build["steps"]
    names = [uses(s) for s in steps]
    assert names[0] == "actions/checkout"
    python = next(s for s in steps if uses(s) == "actions/setup-python")
    assert str(python["with"]["python-version"]) == "3.11"
    make = [i for i, s in enumerate(steps) if re.search(r"(^|\s)make book(\s|$)", s.get("run", ""))]
    assert len(make) == 1, "the build job must run `make book` once"
    upload = [i for i, s in enumerate(steps) if uses(s) == "actions/upload-pages-artifact"]
    assert len(upload) == 1 and upload[0] > make[0]
    assert steps[upload[0]]["with"]["path"] == "_build/html"
    # `make book` really writes there: jupyter-book builds the repository root into ./_build/html.
    assert "jupyter-book build" in (REPO_ROOT / "Makefile").read_text() and "_build/html" in (REPO_ROOT / "Makefile").read_text()
    assert "actions/configure-pages" in names


def test_workflow_deploys_to_pages_with_the_needed_permissions():
    workflow = load_workflow()
    assert workflow["permissions"]["pages"] == "write"
    assert workflow["permissions"]["id-token"] == "write"
    assert workflow["concurrency"]["group"]
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build" or "build" in deploy["needs"]
    assert deploy["environment"]["name"] == "github-pages"
    assert [uses(s) for s in deploy["steps"]] == ["actions/deploy-pages"]
    cached = [s["with"]["path"] for s in steps_of(workflow) if uses(s) == "actions/cache"]
    assert "data/cache" in cached


def test_readme_says_how_the_published_pages_were_built():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The published book", 1)[1].split("\n## ", 1)[0]
    for fact in (".github/workflows/book.yml", "offline profile", "digits", "CPU", "make book"):
        assert fact in section, fact
