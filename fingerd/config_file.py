"""One setting of the daemon's config file, read with the standard library only.

``fingerd set``, ``fingerd edit`` and ``fingerd query`` run under any
Python 3 on the host, without the daemon's packages, yet must find what
the daemon was told: its setter socket, its status file, its port.  So
they read the one key they need the way the daemon's parser
(`configargparse`) reads it, from the file named with ``-c``, else from
`DEFAULT_CONFIG` when it exists and can be read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

DEFAULT_CONFIG = "/etc/fingerd.conf"
CONFIG_LINE = re.compile(
    r"^(?P<key>[^:=;#\s]+)\s*(?:(?P<equal>[:=\s])\s*(['\"]?)(?P<value>.+?)?\3)?\s*(?:\s[;#]\s*(?P<comment>.*?)\s*)?$"
)


class ConfigFileError(Exception):
    """The config file named with ``-c`` cannot be read."""


def config_value(text: str, key: str) -> str | None:
    """``key``'s value in a config file's text (the last one wins), None when it is not set."""
    value = None
    for line in text.split("\n"):
        line = line.strip()
        if not line or line[0] in "#;[" or line.startswith("---"):
            continue
        match = CONFIG_LINE.match(line)
        if match and match["key"] == key:
            value = match["value"] or ""
    return value


def setting(
    key: str, given: str | None, environ: Mapping[str, str], path: str | None, unreadable_default_is_error: bool = False
) -> str | None:
    """``key`` chosen the way the daemon chooses it: the option ``given``, then ``FINGERD_<KEY>``, then the config file.

    None when none of them sets it; an empty string when the config file
    sets it empty.  Raises `ConfigFileError` as `read_setting` does.
    """
    if given:
        return given
    variable = "FINGERD_" + key.upper().replace("-", "_")
    if environ.get(variable):
        return environ[variable]
    return read_setting(key, path, unreadable_default_is_error)


def read_setting(key: str, path: str | None, unreadable_default_is_error: bool = False) -> str | None:
    """``key`` from the config file ``path``, or from `DEFAULT_CONFIG` when ``path`` is None; None when unset.

    A named file must be readable (`ConfigFileError` otherwise).  The
    default one is skipped when it does not exist, and also when this
    user may not read it (an administrator may keep it from users),
    unless ``unreadable_default_is_error``: a command that would act on
    the wrong file when guessing says so instead.
    """
    try:
        with open(path or DEFAULT_CONFIG, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except FileNotFoundError:
        if path is None:
            return None
        raise ConfigFileError(f"no config file {path}") from None
    except OSError as error:
        if path is None and not unreadable_default_is_error:
            return None
        raise ConfigFileError(f"cannot read config file {path or DEFAULT_CONFIG}: {error.strerror}") from None
    return config_value(text, key)
