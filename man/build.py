#!/usr/bin/env python3
"""Build the manual pages in man/ from the option parsers, so no page can miss an option.

Every page in man/ is written by this script; people edit man/src/ and run
``python3 man/build.py``.  tests/test_manpages.py builds the pages again into
a temporary directory and fails when they differ from man/, so an option
added to a parser without rebuilding the pages fails the tests.

- fingerd(8), fingerd-set(1) and fingerd-query(1): argparse-manpage writes
  the options from the parsers themselves (`fingerd.config.Parser`, and the
  ``build_parser()`` of `fingerd.setter.client` and `fingerd.client`); the
  hand-written sections come from ``man/src/<page>.include``, in
  argparse-manpage's include format (``[SECTION]`` headings).
- fingerd.conf(5): ``man/src/fingerd.conf.5.in``, whose ``@KEYS@`` line is
  replaced by every config-file key of the daemon's parser, with its help,
  default and environment variable.
- fingerd-status(5): ``man/src/fingerd-status.5.in`` as it is.

Each page gets the same ``.TH`` line: the version from `fingerd.__version__`
and the fixed `DATE`, never today's date, and the help text is wrapped at a
fixed width, so a build depends on nothing but the sources.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from argparse_manpage.manpage import Manpage, _ManpageFormatter

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
sys.path.insert(0, str(HERE.parent))  # the checkout's fingerd, never an installed one

from fingerd import __version__
from fingerd.client import build_parser as query_parser
from fingerd.config import Parser
from fingerd.setter.client import build_parser as set_parser

DATE = "2026-12-01"
"""The date every page shows: when the pages were last revised by hand (change it with them)."""
SOURCE = f"fingerd {__version__}"
WIDTH = "80"
"""Columns argparse wraps help text at: fixed, or the build would depend on the terminal."""
MANUALS = {"1": "User Commands", "5": "File Formats Manual", "8": "System Manager's Manual"}
KEYS_MARKER = "@KEYS@"


@dataclass(frozen=True)
class Page:
    """One manual page: its file name in man/, and what its NAME line says."""

    file: str
    summary: str

    @property
    def name(self) -> str:
        return self.file.rpartition(".")[0]

    @property
    def section(self) -> str:
        return self.file.rpartition(".")[2]

    def header(self) -> str:
        """The lines every page starts with: a comment, ``.TH``, and no hyphenation or justification.

        Option names and paths broken at a hyphen, or spread by justified
        spaces, would read wrong and could not be searched for.
        """
        return (
            f'.\\" Written by man/build.py from man/src/; edit those and run python3 man/build.py.\n'
            f'.TH {roff(self.name.upper())} {self.section} {DATE} "{SOURCE}" "{MANUALS[self.section]}"\n'
            ".nh\n.ad l\n"
        )


@dataclass(frozen=True)
class CommandPage(Page):
    """A command's page, its options written by argparse-manpage from ``parser()``."""

    parser: Callable[[], argparse.ArgumentParser]


DAEMON = CommandPage("fingerd.8", "finger server (RFC 1288) with a status file, web view and IRC bot", Parser)
COMMANDS = (
    DAEMON,
    CommandPage("fingerd-set.1", "set your finger status through the fingerd daemon", set_parser),
    CommandPage("fingerd-query.1", "ask a finger server about a user, or for its user list", query_parser),
)
CONFIG = Page("fingerd.conf.5", "configuration file of the fingerd finger server")
STATUS = Page("fingerd-status.5", "status file of the fingerd finger server")
PAGES: tuple[Page, ...] = (*COMMANDS, CONFIG, STATUS)


class _Formatter(_ManpageFormatter):
    """argparse-manpage's formatter, with each option's help as the command's own ``--help`` words it.

    argparse-manpage expands help with a plain `argparse.HelpFormatter`; the
    daemon's formatter adds ``(default: ...)``, which a manual page should
    say as well.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return self.of._get_help_string(action)


@contextlib.contextmanager
def _fixed_width() -> Iterator[None]:
    """argparse wraps at the terminal's width (``$COLUMNS``); pin it while pages are written."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def roff(text: str) -> str:
    """Plain text as roff input text: backslashes and dashes escaped, no line taken for a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def command_page(page: CommandPage) -> str:
    """A command's page: argparse-manpage's rendering of the parser, with the include file's sections."""
    parser = page.parser()
    parser.description = None  # the include file's DESCRIPTION says it at length; the summary is the NAME line
    parser.epilog = None  # what the epilog says is in the include file's sections
    _same_help_on_every_python(parser)
    groups = _retitle_groups(parser)
    with _fixed_width():
        manpage = Manpage(parser)
        manpage.mf = _Formatter(page.name, manpage.formatter, format="pretty")
        manpage.prog = page.name
        manpage.description = page.summary
        manpage.parse_include(str(SOURCES / f"{page.file}.include"))
        text = str(manpage)
    body = text.partition("\n")[2]  # its own .TH line gives way to the header every page has
    return page.header() + _tidy(body, groups)


def _same_help_on_every_python(parser: argparse.ArgumentParser) -> None:
    """Python 3.10's BooleanOptionalAction puts ``(default: ...)`` in its help; later ones leave it to formatters."""
    for action in parser._actions:
        if isinstance(action, argparse.BooleanOptionalAction) and action.help:
            action.help = action.help.removesuffix(" (default: %(default)s)")


def _retitle_groups(parser: argparse.ArgumentParser) -> list[str]:
    """Name the positional arguments' group ARGUMENTS; the titles of the other named groups.

    argparse-manpage leaves positional arguments untitled, inside
    DESCRIPTION, and makes every other group a section of its own.
    """
    titles = []
    for group in parser._action_groups:
        if group.title == "positional arguments" and group._group_actions:
            group.title = "arguments"
        elif group.title not in ("options", "optional arguments", None) and group._group_actions:
            titles.append(group.title)
    return titles


def _tidy(text: str, titles: Sequence[str]) -> str:
    """Make each named group a subsection of OPTIONS, as man-pages(7) lays out a long option list.

    Also drops the blank lines argparse-manpage puts between entries (in
    roff a blank line is an extra empty output line, and ``.TP`` already
    spaces the entries), and keeps a help line that wrapping started with
    an apostrophe from being read as a request: argparse-manpage writes
    none of its own that way.
    """
    lines = text.split("\n")
    for title in titles:
        heading = f".SH {title.upper()}"
        if heading not in lines:
            raise RuntimeError(f"argparse-manpage wrote no {heading!r}: has its output changed?")
        lines[lines.index(heading)] = f'.SS "{title[:1].upper()}{title[1:]}"'
    return "\n".join("\\&" + line if line.startswith("'") else line for line in lines if line.strip()) + "\n"


def config_page() -> str:
    """fingerd.conf(5): the hand-written page with every config-file key of the daemon's parser."""
    template = (SOURCES / f"{CONFIG.file}.in").read_text(encoding="utf-8")
    if template.count(f"{KEYS_MARKER}\n") != 1:
        raise RuntimeError(f"{CONFIG.file}.in: needs exactly one line {KEYS_MARKER}")
    return CONFIG.header() + template.replace(f"{KEYS_MARKER}\n", config_keys())


def config_keys() -> str:
    """One ``.TP`` entry per config-file key, in the parser's order."""
    parser = Parser()
    parser.parse_known_args([], env_vars={})  # configargparse names each action's environment variable here
    entries = []
    for action in parser._actions:
        keys = parser.get_possible_config_keys(action)
        if keys:
            entries.append(_key_entry(keys[0], action))
    return "".join(entries)


def _key_entry(key: str, action: argparse.Action) -> str:
    help_text = (action.help or "").removesuffix(" (default: %(default)s)")
    default = _config_default(action.default)
    facts = ([f"Default: {roff(default)}."] if default is not None else []) + [
        f"Environment: \\fB{roff(action.env_var)}\\fR."
    ]
    return f".TP\n\\fB{roff(key)}\\fR = {_config_value(action)}\n{roff(help_text)}\n.br\n" + "\n".join(facts) + "\n"


def _config_value(action: argparse.Action) -> str:
    """What the value looks like, in the config file's syntax."""
    if action.nargs == 0:
        return "\\fBtrue\\fR | \\fBfalse\\fR"
    metavar = roff(action.metavar or action.dest.upper())
    if isinstance(action, argparse._AppendAction):
        return f"\\fI{metavar}\\fR | [\\fI{metavar}\\fR, ...]"
    return f"\\fI{metavar}\\fR"


def _config_default(value: object) -> str | None:
    """A default as it would be written in the config file; None when there is none to show."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return "empty"
    return str(value)


def status_page() -> str:
    return STATUS.header() + (SOURCES / f"{STATUS.file}.in").read_text(encoding="utf-8")


def build() -> dict[str, str]:
    """Every page's file name and text."""
    pages = {page.file: command_page(page) for page in COMMANDS}
    pages[CONFIG.file] = config_page()
    pages[STATUS.file] = status_page()
    return pages


def main(argv: Sequence[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(description="Write the manual pages from the option parsers and man/src/.")
    arguments.add_argument("--output-dir", type=Path, default=HERE, metavar="DIR", help="default: man/")
    output = arguments.parse_args(argv).output_dir
    output.mkdir(parents=True, exist_ok=True)
    for name, text in build().items():
        (output / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
