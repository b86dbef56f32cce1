"""The book's website: the intro's figures (up to date, legible), the one home of the repository's address
that the Colab install cells follow, and the GitHub Pages workflow that publishes the book.

Fast (no kernel, no build): runs the figure scripts once and reads YAML, JSON and Markdown.
"""

from __future__ import annotations

import json
import re
import runpy
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

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


LAYERS_SCRIPT = FIGURES / "make_layers_diagram.py"
LAYERS_SVG = FIGURES / "layers.svg"
# The width of the book's text column, in CSS pixels, on a wide screen: sphinx-book-theme 1.3 / pydata
# 0.17 cap the page at 88rem (1408 px), give the left sidebar 25% (352 px) and the right-hand "on this
# page" column 17rem (272 px), and pad the article by 1rem + 2rem on each side (96 px): 688 px. A
# figure drawn at `:width: P%` is P% of it; on a narrower screen everything shrinks together.
TEXT_WIDTH_PX = 1408 - 352 - 272 - 96
SMALLEST_LEGIBLE_PX = 9


def rendered_font_px(svg, width_fraction):
    """The smallest font size of an SVG's texts, in CSS pixels, when drawn at that share of the text column."""
    root = ET.parse(svg).getroot()
    view_width = float(root.get("viewBox").split()[2])
    sizes = [float(m) for t in root.iter(f"{SVG}text") for m in re.findall(r"font-size: ([\d.]+)px", t.get("style", ""))]
    assert sizes, f"{svg} has no text with a font size"
    return min(sizes) * TEXT_WIDTH_PX * width_fraction / view_width


def test_layer_diagram_is_the_package_shape_tests_order_and_is_up_to_date(tmp_path):
    from test_package_shape import LAYERS

    drawn = runpy.run_path(str(LAYERS_SCRIPT))
    assert tuple(layer for layer, _, _ in drawn["LAYERS"]) == LAYERS
    out = drawn["main"]([str(tmp_path / "layers.svg")])
    assert svg_structure(out) == svg_structure(LAYERS_SVG), "book/figures/layers.svg is stale: rerun book/figures/make_layers_diagram.py"
    texts, _ = svg_structure(LAYERS_SVG)
    for _, folder, _ in drawn["LAYERS"]:
        assert folder in texts


def test_the_intro_figures_are_legible_at_the_books_text_width():
    intro = (BOOK_DIR / "intro.md").read_text(encoding="utf-8")
    figures = re.findall(r"```\{figure\} (\S+)\n(.*?)```", intro, re.S)
    assert {Path(path).name for path, _ in figures} >= {"system.svg", "layers.svg"}
    for path, options in figures:
        width = re.search(r"^:width: (\d+)%$", options, re.M)
        fraction = int(width.group(1)) / 100 if width else 1.0
        px = rendered_font_px(BOOK_DIR / path, fraction)
        assert px >= SMALLEST_LEGIBLE_PX, f"{path}: its smallest text is {px:.1f} px at {fraction:.0%} of {TEXT_WIDTH_PX} px"


def test_the_legibility_check_catches_a_wide_drawing(tmp_path):
    wide = tmp_path / "wide.svg"
    wide.write_text('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1044 432"><text style="font-size: 9.5px">x</text></svg>')
    assert rendered_font_px(wide, 1.0) < SMALLEST_LEGIBLE_PX <= rendered_font_px(wide, 2.0)


SYNC_SCRIPT = REPO_ROOT / "scripts" / "sync_install_cells.py"


def first_code_cell(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


def test_the_repository_address_lives_in_config_and_everything_else_follows_it():
    sync = runpy.run_path(str(SYNC_SCRIPT))
    url, branch = sync["repository"]()
    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert url == config["repository"]["url"].rstrip("/") and url.startswith("https://github.com/")
    stale = [p.name for p in sorted(BOOK_DIR.glob("*.ipynb")) if first_code_cell(p) != "".join(sync["install_cell"](url, branch))]
    assert not stale, f"the install cells of {stale} do not install {url}@{branch}; run python scripts/sync_install_cells.py"
    urls = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8").split("[project.urls]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'(?m)^Repository = "(.*)"$', urls).group(1) == url, "run python scripts/sync_install_cells.py"
    # Nowhere else: a file that spells the address out would not follow a change of _config.yml.
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.split()
    spelled = {p for p in tracked if p.endswith((".py", ".md", ".yml", ".yaml", ".toml", ".ipynb", ".txt", ".sbatch"))
               and (REPO_ROOT / p).is_file() and url in (REPO_ROOT / p).read_text(encoding="utf-8", errors="replace")}
    notebooks = {p.relative_to(REPO_ROOT).as_posix() for p in BOOK_DIR.glob("*.ipynb")}
    assert spelled <= {"_config.yml", "pyproject.toml"} | notebooks, sorted(spelled)


def test_the_sync_script_follows_a_changed_address(tmp_path):
    sync = runpy.run_path(str(SYNC_SCRIPT))
    (tmp_path / "book").mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    shutil.copy(BOOK_DIR / "01_data.ipynb", tmp_path / "book")
    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))
    config["repository"].update(url="https://github.com/someone/fork", branch="dev")
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    changed = sync["sync"](tmp_path)
    assert sorted(p.name for p in changed) == ["01_data.ipynb", "pyproject.toml"]
    assert 'git+https://github.com/someone/fork@dev"' in first_code_cell(tmp_path / "book" / "01_data.ipynb")
    assert 'Repository = "https://github.com/someone/fork"' in (tmp_path / "pyproject.toml").read_text()
    assert sync["sync"](tmp_path) == []  # a second run has nothing left to change


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
    assert build["env"]["MEAL_LITE_PROFILE"] == "imagenette"  # the default profile, downloads and all
    assert "HF_HUB_OFFLINE" not in build["env"]
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
    assert {"data/cache", "data/imagenette2-160", "~/.cache/huggingface"} <= set(cached)


def test_readme_says_how_the_published_pages_were_built():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The published book", 1)[1].split("\n## ", 1)[0]
    for fact in (".github/workflows/book.yml", "imagenette profile", "digits", "CPU", "make book"):
        assert fact in section, fact
