"""The README a newcomer can take in, and the documentation pages it links: short, with the two set-up commands
first, and no dead link."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "benchmarks" / "README.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def test_readme_is_short_and_starts_with_what_and_how():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, len(lines)
    first_screen = "\n".join(lines[:60])
    assert "proven equal to PyTorch" in first_screen
    assert first_screen.count("python3.11 -m venv .venv") == 2  # the report and the tests
    assert "```python" in "\n".join(lines)


@pytest.mark.parametrize("page", [README] + PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    for target, _ in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (page.parent / target).exists(), f"{page.name}: dead link {target}"


def test_the_readme_links_every_documentation_page():
    text = README.read_text(encoding="utf-8")
    for page in PAGES:
        assert str(page.relative_to(ROOT)) in text, page
