"""The number the built book gives a section file (a page listed under a chapter's ``sections`` in
_toc.yml) is the number README.md, book/intro.md and _toc.yml's comment call it.

Sphinx (with sphinx-external-toc) appends a chapter's toctree of section files after the chapter's own
content, so in a numbered part the section files are numbered after the chapter's own ``##`` headings:
chapter 3 with six ``##`` sections makes its first section file 3.7 (checked once against a build with
execution off: the page's title reads "3.7. Dark knowledge ..."). A new ``##`` in chapter 3 renumbers the
page; this test then names the files that still call it by the old number. It reads text only (no build).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^\s*(```|:::)")
MENTION = re.compile(r"\b(?:[Ss]ection|[Cc]hapter)s? (\d+\.\d+)\b")


def level_two_headings(notebook: Path) -> list[str]:
    """The ``## `` headings of a notebook's rendered markdown cells, outside fenced blocks, in order."""
    found = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "markdown" or "remove-cell" in cell.metadata.get("tags", []):
            continue
        fenced = False
        for line in cell.source.splitlines():
            if FENCE.match(line):
                fenced = not fenced
            elif not fenced and line.startswith("## "):
                found.append(line[3:].strip())
    return found


def section_numbers() -> dict[str, str]:
    """``{file: number}`` for every section file of the numbered part, numbered the way Sphinx does."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    numbered = [part for part in toc["parts"] if part.get("numbered")]
    assert len(numbered) == 1, "this test derives numbers for one numbered part; extend it for several"
    numbers = {}
    for chapter_number, chapter in enumerate(numbered[0]["chapters"], start=1):
        own = len(level_two_headings(ROOT / f"{chapter['file']}.ipynb"))
        for i, section in enumerate(chapter.get("sections", []), start=1):
            numbers[section["file"]] = f"{chapter_number}.{own + i}"
    return numbers


def test_sphinx_numbering_rule_on_chapter_three():
    numbers = section_numbers()
    headings = level_two_headings(ROOT / "book/03_kl_distillation.ipynb")
    assert "Summary" in headings and "Exercises" in headings  # the reader recognises the rule's input
    assert numbers["book/03b_dark_knowledge"] == f"3.{len(headings) + 1}"


def test_readme_intro_and_toc_name_the_built_number():
    numbers = section_numbers()
    number = numbers["book/03b_dark_knowledge"]
    chapter = number.split(".")[0]
    intro = (ROOT / "book/intro.md").read_text()
    row = next(line for line in intro.splitlines() if "{doc}`03b_dark_knowledge`" in line)
    assert f"({number})" in row, f"book/intro.md's chapter table should call 03b_dark_knowledge {number}: {row}"
    toc_line = next(line for line in (ROOT / "_toc.yml").read_text().splitlines() if "sections:" in line)
    assert f"# {number}:" in toc_line, f"_toc.yml's comment should say {number}: {toc_line}"
    readme = (ROOT / "README.md").read_text()
    assert f"section {number}" in readme
    # README and intro name pages, not the sections inside a page: every "section 3.N" there is a section file.
    valid = set(numbers.values())
    for name, text in {"README.md": readme, "book/intro.md": intro}.items():
        wrong = [m for m in MENTION.findall(text) if m.split(".")[0] == chapter and m not in valid]
        assert not wrong, f"{name} names section(s) {wrong} of chapter {chapter}, which the book numbers {sorted(valid)}"
