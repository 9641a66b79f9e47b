"""The code shown in docs/from-twisted.md is the code in the repository.

Each excerpt there is introduced by ``From [`path`](../path):`` and may
leave lines out with a ``...`` line; every run of lines between those must
appear, unbroken, in the file it names.  An excerpt that drifts from its
file would make the document argue with code that no longer exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "from-twisted.md"
HEADING = re.compile(r"From \[`(?P<path>[^`]+)`\]\(\.\./(?P<link>[^)]+)\):$")


def excerpts() -> list[tuple[int, str, list[str]]]:
    """(line number, file, lines) of every excerpt in the document."""
    lines = DOC.read_text().splitlines()
    found = []
    for number, line in enumerate(lines):
        match = HEADING.match(line)
        if not match:
            continue
        assert match["path"] == match["link"], f"line {number + 1}: the link names another file"
        assert lines[number + 1] == "```python", f"line {number + 2}: an excerpt is a python block"
        end = lines.index("```", number + 2)
        found.append((number + 1, match["path"], lines[number + 2 : end]))
    return found


def runs(block: list[str]) -> list[list[str]]:
    """The block cut at its ``...`` lines."""
    pieces: list[list[str]] = [[]]
    for line in block:
        if line.strip() == "...":
            pieces.append([])
        else:
            pieces[-1].append(line)
    return [piece for piece in pieces if piece]


def contains(source: list[str], run: list[str]) -> bool:
    return any(source[start : start + len(run)] == run for start in range(len(source) - len(run) + 1))


def test_the_document_has_excerpts():
    assert len(excerpts()) >= 10


@pytest.mark.parametrize("line, path, block", [pytest.param(*excerpt, id=f"line{excerpt[0]}") for excerpt in excerpts()])
def test_each_excerpt_is_in_its_file(line, path, block):
    source = (ROOT / path).read_text().splitlines()
    for run in runs(block):
        assert contains(source, run), f"docs/from-twisted.md line {line}: not in {path}: {run[0]!r}..."


CITED_TEST = re.compile(r"tests/(?P<file>[\w/]+\.py)::(?P<name>\w+)")


def test_every_test_the_attack_surface_cites_exists():
    """Each protection in docs/attack-surface.md names the test that shows it; the name must be real."""
    text = (ROOT / "docs" / "attack-surface.md").read_text()
    cited = {(match["file"], match["name"]) for match in CITED_TEST.finditer(text)}
    assert len(cited) > 50
    missing = [
        f"tests/{file}::{name}"
        for file, name in sorted(cited)
        if not re.search(rf"^def {name}\(", (ROOT / "tests" / file).read_text(), re.M)
    ]
    assert not missing, missing
