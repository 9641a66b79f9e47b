"""The code shown in docs/from-twisted.md is the code in the repository.

Each excerpt there is introduced by ``From [`path`](../path):`` and may
leave lines out with a ``...`` line; every run of lines between those must
appear, unbroken, in the file it names.  An excerpt that drifts from its
file would make the document argue with code that no longer exists.

Every relative link in README.md, docs/*.md and bench/README.md must lead
somewhere: to a file that exists and, with a ``#fragment``, to a heading
in it, so a section that moves cannot leave a dead link behind.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

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


# Links between the documents: README.md is the front door and the rest is in
# docs/, so a section that moves must not leave a link behind pointing at it.

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
ATX_HEADING = re.compile(r"^#{1,6}[ \t]+(?P<text>.*?)[ \t#]*$", re.M)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; a repeated heading gets ``-1``, ``-2``, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for match in ATX_HEADING.finditer(FENCE.sub("", path.read_text())):
        base = slug(match["text"])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(document: Path) -> list[str]:
    """What is wrong with each relative link in ``document``: a missing file, or a fragment with no heading."""
    problems = []
    text = FENCE.sub("", document.read_text())
    for match in LINK.finditer(text):
        target = match["target"]
        if SCHEME.match(target):
            continue
        path_part, _, fragment = unquote(target).partition("#")
        where = f"{document.relative_to(ROOT) if document.is_relative_to(ROOT) else document}: ({target})"
        linked = (document.parent / path_part).resolve() if path_part else document
        if not linked.exists():
            problems.append(f"{where}: no file {path_part}")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            problems.append(f"{where}: no heading #{fragment} in {linked.name}")
    return problems


def test_the_documents_have_links():
    assert sum(len(LINK.findall(document.read_text())) for document in DOCUMENTS) > 50


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document):
    """Each relative link names a file that exists and, with a ``#fragment``, a heading in it."""
    assert not broken_links(document)


def test_slugs_are_githubs():
    assert slug("Reactor, Protocol and Factory (finger01–07)") == "reactor-protocol-and-factory-finger0107"
    assert slug("Directories the daemon's user must own") == "directories-the-daemons-user-must-own"
    assert slug("Asking a finger server: `fingerd query`") == "asking-a-finger-server-fingerd-query"
    assert slug("Doing the standard thing: `~/.plan` (finger19c)") == "doing-the-standard-thing-plan-finger19c"


def test_a_broken_link_is_found(tmp_path):
    """The check can fail: a missing file, a missing heading, in the same file or another."""
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n")
    document = tmp_path / "doc.md"
    document.write_text(
        "# Doc\n\n## Here\n\n"
        "[fine](other.md#a-section) [fine](#here) [fine](https://example.org/nothing#x)\n"
        "[gone](missing.md) [no heading](other.md#nowhere) [no heading here](#there)\n"
        "```\n[in code](ignored.md)\n```\n"
    )
    problems = broken_links(document)
    assert len(problems) == 3, problems
    assert any("no file missing.md" in problem for problem in problems)
    assert any("#nowhere" in problem for problem in problems)
    assert any("#there" in problem for problem in problems)
