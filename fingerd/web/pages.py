"""HTML pages from templates: pure functions from values to bytes.

Templates are `string.Template` files (``$name`` placeholders), read once at
start-up from the package or from a `--templates` directory that overrides
them file by file.  Every value is HTML-escaped on the way in unless it is
`Markup`, text this module built itself; so a template author cannot forget
to escape, and a status holding ``<script>`` arrives as text.  Statuses are
first made visible the way the finger service shows them (no control
characters, no bidirectional overrides), so the web view and finger agree.
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from fingerd.finger.answer import list_status
from fingerd.render import visible

TEMPLATE_NAMES = ("layout.html", "index.html", "row.html", "user.html", "not-found.html", "failed.html")
STATIC_NAMES = ("style.css", "live.js")

_SAMPLE_VALUES = {
    "layout.html": ("title", "host", "live", "body"),
    "index.html": ("host", "rows", "empty_hidden"),
    "row.html": ("href", "name", "status"),
    "user.html": ("name", "status"),
    "not-found.html": (),
    "failed.html": (),
}


class TemplateError(Exception):
    """A template is missing, unreadable or names an unknown placeholder."""


class Markup(str):
    """Text that is already HTML and must not be escaped again."""


def escape(value: object) -> Markup:
    """Escape a value for HTML text or a quoted attribute."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(visible(str(value)), quote=True))


class Templates:
    """The page templates and static files, all in memory."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts
        self.templates = {name: string.Template(texts[name]) for name in TEMPLATE_NAMES}
        for template, placeholders in _SAMPLE_VALUES.items():
            try:
                self.fill(template, **{key: "" for key in placeholders})
            except (KeyError, ValueError) as error:
                raise TemplateError(f"{template}: unknown or malformed placeholder {error}") from None

    @classmethod
    def load(cls, directory: str | None = None) -> Templates:
        """Read the packaged templates, overridden by files in ``directory``."""
        packaged = resources.files("fingerd.web") / "templates"
        texts = {}
        for name in TEMPLATE_NAMES + STATIC_NAMES:
            override = Path(directory) / name if directory else None
            try:
                if override is not None and override.exists():
                    texts[name] = override.read_text(encoding="utf-8")
                else:
                    texts[name] = (packaged / name).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise TemplateError(f"{name}: {error}") from None
        return cls(texts)

    def fill(self, template: str, /, **values: object) -> Markup:
        """Fill ``template``, escaping every value that is not `Markup`."""
        return Markup(self.templates[template].substitute({key: escape(value) for key, value in values.items()}))

    def static(self, name: str) -> bytes:
        return self.texts[name].encode("utf-8")


def _page(templates: Templates, host: str, title: str, body: Markup, live: str = "") -> bytes:
    return templates.fill("layout.html", title=title, host=host, live=live, body=body).encode("utf-8")


def user_href(name: str) -> str:
    return "/~" + quote(name, safe="")


def index_page(templates: Templates, host: str, listing: Iterable[tuple[str, tuple[str, ...]]]) -> bytes:
    """The list of users, each with the first line of their status, cut as finger's list cuts it."""
    rows = [
        templates.fill("row.html", href=user_href(name), name=name, status=list_status(status))
        for name, status in listing
    ]
    hidden = Markup(" hidden") if rows else Markup("")
    joined = Markup("\n".join(row.rstrip("\n") for row in rows))
    body = templates.fill("index.html", host=host, rows=joined, empty_hidden=hidden)
    return _page(templates, host, f"Users on {host}", body, live="/api/users")


def user_page(templates: Templates, host: str, name: str, status: tuple[str, ...]) -> bytes:
    """One user's whole status."""
    lines = Markup("\n".join(escape(line) for line in status))
    body = templates.fill("user.html", name=name, status=lines)
    return _page(templates, host, f"{name} on {host}", body, live="/api/users/" + quote(name, safe=""))


def not_found_page(templates: Templates, host: str) -> bytes:
    return _page(templates, host, "No such user", templates.fill("not-found.html"))


def failed_page(templates: Templates, host: str) -> bytes:
    """A source failed and nobody else knew the name: worth asking again later."""
    return _page(templates, host, "Lookup failed", templates.fill("failed.html"))
