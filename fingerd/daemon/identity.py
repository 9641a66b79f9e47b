"""Dropping root after the ports are bound (docs/install.md, "Running it as a daemon").

Order matters: supplementary groups first, then the group, the user last
(once the user is not root it could no longer change its groups).  glibc
applies each change to every thread of the process; it is still done before
any thread is started, so no thread ever runs with a mix.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd


class IdentityError(Exception):
    """The process could not take the configured identity."""


def target_ids(options: argparse.Namespace) -> tuple[int, int] | None:
    """The uid and gid the daemon will run as after the drop, or None if it keeps its own."""
    user, group = options.user, options.group
    if os.geteuid() != 0 or user == "root":
        return None
    try:
        return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def drop_privileges(user: str, group: str) -> str:
    """Become ``user``:``group`` when running as root; say what was done."""
    if os.geteuid() != 0:
        return "not started as root; running as uid %d" % os.getuid()
    if user == "root":
        return "running as root (--user root)"
    try:
        uid = pwd.getpwnam(user).pw_uid
        gid = grp.getgrnam(group).gr_gid
    except KeyError as error:
        raise IdentityError(f"unknown user or group: {error}") from None
    try:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    except OSError as error:
        raise IdentityError(f"cannot become {user}:{group}: {error.strerror}") from None
    if os.geteuid() != uid or os.getegid() != gid or os.getgroups():
        raise IdentityError(f"identity change to {user}:{group} did not take effect")
    return f"dropped privileges to {user}:{group} (uid {uid}, gid {gid})"
