"""The manual pages in man/: they render cleanly, name every option, are what man/build.py makes, and get installed.

man/build.py writes the pages from the option parsers, so that an option
cannot be added without its page saying so; here the build runs again and
must give the very bytes that are in man/.  groff and man must be
installed (tests/run installs them): a missing one fails these tests
rather than letting a broken page pass unseen.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from types import ModuleType

import pytest

import fingerd
from conftest import ROOT
from fingerd.config import Parser
from fingerd.users.statusfile import parse_status_file

MAN = ROOT / "man"
REBUILD = "run python3 man/build.py and commit the result"


def load_build() -> ModuleType:
    """man/build.py, imported as a module (it is a script, outside any package)."""
    spec = importlib.util.spec_from_file_location("man_build", MAN / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build = load_build()
PAGES = {page.file: page for page in build.PAGES}
COMMAND_PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {page.file: page.parser for page in build.COMMANDS}


def tool(name: str) -> str:
    """The path of ``name``; a missing tool fails the test, since skipping would hide a broken page."""
    path = shutil.which(name)
    package = "man-db" if name == "man" else name
    assert path, f"{name} is not installed: tests/run installs it (Debian package {package})"
    return path


@functools.cache
def rendered(file: str) -> str:
    """The page as ``man`` shows it on an 80-column UTF-8 terminal."""
    environment = {**os.environ, "LC_ALL": "C.UTF-8", "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"}
    shown = subprocess.run(
        [tool("man"), "-l", str(MAN / file)], capture_output=True, text=True, env=environment, timeout=60
    )
    assert shown.returncode == 0, f"man -l man/{file}: {shown.stderr}"
    return shown.stdout


def mentions(text: str, word: str) -> bool:
    """``word`` in ``text`` as a whole word: ``--timeout`` is not found in ``--web-timeout``."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def documented_options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string a page must show: all but argparse's own --help, which argparse-manpage leaves out."""
    return [
        option
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        for option in action.option_strings
    ]


def test_man_holds_exactly_the_pages_the_build_makes():
    """A page in man/ that the build no longer writes would be installed stale forever."""
    pages = {path.name for path in MAN.iterdir() if re.fullmatch(r".+\.[1-8]", path.name)}
    assert pages == set(PAGES)


@pytest.mark.parametrize("file", sorted(PAGES))
def test_groff_finds_nothing_to_warn_about(file):
    """``-ww`` turns on every warning: an unknown macro, a bad escape or a text line read as a request shows here."""
    checked = subprocess.run(
        [tool("groff"), "-man", "-ww", "-z", str(MAN / file)], capture_output=True, text=True, timeout=60
    )
    assert (checked.returncode, checked.stderr) == (0, "")


@pytest.mark.parametrize("file", sorted(PAGES))
def test_man_shows_the_page_under_its_name(file):
    """``man -l`` goes through man-db's own pipeline, as ``man fingerd`` will once installed."""
    page = PAGES[file]
    text = " ".join(rendered(file).split())
    assert f"{page.name} - {page.summary}" in text
    assert text.startswith(f"{page.name.upper()}({page.section})")


def test_the_daemon_page_names_every_option():
    text = rendered("fingerd.8")
    missing = [option for option in documented_options(Parser()) if not mentions(text, option)]
    assert not missing, f"fingerd.8 lacks {missing}: {REBUILD}"


@pytest.mark.parametrize("file", sorted(set(COMMAND_PARSERS) - {"fingerd.8"}))
def test_each_command_page_names_every_option(file):
    text = rendered(file)
    missing = [option for option in documented_options(COMMAND_PARSERS[file]()) if not mentions(text, option)]
    assert not missing, f"{file} lacks {missing}: {REBUILD}"


def test_the_config_page_names_every_key_and_its_variable():
    """Each key of the daemon's parser has its entry (``key = VALUE``) and its FINGERD_ variable."""
    parser = Parser()
    parser.parse_known_args([], env_vars={})
    text = rendered("fingerd.conf.5")
    for action in parser._actions:
        keys = parser.get_possible_config_keys(action)
        if not keys:
            continue
        assert re.search(rf"^ +{re.escape(keys[0])} = ", text, re.MULTILINE), f"no entry for {keys[0]}: {REBUILD}"
        assert mentions(text, action.env_var), f"{action.env_var} not named: {REBUILD}"


def test_the_pages_are_what_the_build_makes(tmp_path):
    """The pages in man/ are byte for byte what man/build.py writes now, so none lags behind a parser."""
    built = subprocess.run(
        [sys.executable, str(MAN / "build.py"), "--output-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert built.returncode == 0, built.stderr
    assert {path.name for path in tmp_path.iterdir()} == set(PAGES)
    for file in PAGES:
        assert (tmp_path / file).read_bytes() == (MAN / file).read_bytes(), f"man/{file} is out of date: {REBUILD}"


def example(file: str) -> str:
    """The first ``.nf`` block of a page, as plain text."""
    lines = (MAN / file).read_text(encoding="utf-8").split("\n")
    start = lines.index(".nf") + 1
    return "\n".join(lines[start : lines.index(".fi", start)]).replace("\\-", "-") + "\n"


def test_the_config_example_is_a_file_the_daemon_accepts(tmp_path):
    config = tmp_path / "fingerd.conf"
    config.write_text(example("fingerd.conf.5"))
    parser = Parser()
    options, unknown = parser.parse_known_args(["-c", str(config)], env_vars={})
    assert unknown == [], "a key the daemon does not know"
    assert options.source == ["file", "passwd"] and options.log_peers is False


def test_the_status_file_example_reads_as_the_page_says():
    parsed = parse_status_file(example("fingerd-status.5").encode())
    assert parsed.problems == []
    assert parsed.users["carol"] == ("Working on the new status page.", "Office hours:", "  Tuesday    14:00-16:00")


def test_the_wheel_installs_each_page_in_its_section(tmp_path):
    """The wheel's data files land in <prefix>/share/man/manN, on man's search path for that prefix.

    Built as ``pip install .`` builds it, from a copy of the source, so no
    ``build/`` is left in the checkout.
    """
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "bench"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "--quiet",
         "--wheel-dir", str(tmp_path), str(source)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = tmp_path.glob("fingerd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for file, page in PAGES.items():
            name = f"fingerd-{fingerd.__version__}.data/data/share/man/man{page.section}/{file}"
            assert name in archive.namelist(), f"{file} is not installed: see [tool.setuptools.data-files]"
            assert archive.read(name) == (MAN / file).read_bytes()
