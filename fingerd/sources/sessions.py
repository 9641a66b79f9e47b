"""Who is logged in, since when, how long idle: utmp, lastlog and the terminals.

This is what the classic finger shows below an account's name and shell::

    On since Mon Nov 30 22:10 (UTC) on pts/3 from host.example
       5 minutes 30 seconds idle
    Last login Mon Nov 30 22:10 (UTC) on pts/3

and, for the empty query, one line per session::

    Login     Name       Tty      Idle  Login Time   Office     Office Phone
    alice     Alice      pts/3       5  Nov 30 22:10 (host.example)

The layout is netkit's finger(1) (``lprint.c`` for the long form, ``sprint.c``
for the list), as Debian's ``finger`` prints it, so a reader sees the same
lines whether in.fingerd or this daemon answers.

The files are the system's, not the users': no local user can write utmp or
lastlog.  They are read as if they could anyway, because a wrong path in the
configuration (a FIFO, ``/dev/zero``, a directory, a 10 GB file) must not
hang or exhaust the daemon: a file is opened with ``O_NONBLOCK`` (a FIFO
opens at once), checked on the descriptor to be a regular file, and read up
to a cap.  A symlink is followed, since ``/var/run`` is one on Debian; what
it ends at must still be a regular file.  What goes wrong is returned as a
one-line reason, for the caller to log once, never raised.

The ``ut_line`` of a record names the terminal whose access time is the idle
time.  It is taken as untrusted text: only a plain device name (``pts/3``,
``tty1``, ``ttyS0``) is looked up, with ``lstat``, and only a character
device counts.

Every field from these files is shown with `fingerd.render.visible` before
it is laid out, so a column is as wide as what the reader sees and no byte
in a host name (a newline, an escape) can break a line or move the cursor;
the reply path escapes again, which changes nothing in text already visible.

Parsing and layout are pure functions (bytes in, value out), tested
directly; only `read_utmp`, `read_last_login` and `terminal` touch the
system.  Times are shown in the daemon's local time zone: the formatters
take the conversion as ``localtime`` (`time.localtime` unless told).
"""

from __future__ import annotations

import os
import re
import stat
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from fingerd.render import visible

UTMP_RECORD = struct.Struct("<h2xi32s4s32s256shhi2i4i20s")
"""glibc's ``struct utmp`` on x86_64 (384 bytes): type, pid, line, id, user, host, exit, session, time, address."""

USER_PROCESS = 7
UTMP_LIMIT = 4 * 1024 * 1024
"""Most bytes of utmp read: about 10,900 sessions, far more than any machine has."""

LASTLOG_RECORD = struct.Struct("<i32s256s")
"""glibc's ``struct lastlog`` on x86_64 (292 bytes): time, line, host; the record of uid N is the Nth."""

OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
TTY_NAME = re.compile(r"[A-Za-z0-9]+(/[0-9]+)?")
"""A terminal worth a ``stat`` under /dev: no dot, no leading slash, at most one level down."""

TALKABLE = 0o220
"""Mode bits of a terminal that accepts ``write``: mesg y (netkit's test)."""

HALF_YEAR = 86400 * 365 // 2
"""Past this, finger shows a login's year instead of its time of day."""

SCREEN_WIDTH = 80
"""netkit's width when its output is not a terminal, as under in.fingerd."""

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
LIST_COLUMNS = " Tty      Idle  Login Time   Office     Office Phone"

LocalTime = Callable[[float], time.struct_time]


@dataclass(frozen=True)
class Session:
    """One login from utmp; the text fields keep invalid UTF-8 as ``\\xNN``."""

    user: str
    tty: str
    host: str
    since: float
    pid: int


class LastLogin(NamedTuple):
    """The last login that lastlog remembers for a uid."""

    when: float
    tty: str
    host: str


class Terminal(NamedTuple):
    """What a terminal's ``stat`` tells finger: seconds since it was last read, and mesg."""

    idle: float
    writable: bool


class ListWidths(NamedTuple):
    """Widths of the Login and Name columns of the list."""

    login: int
    name: int


DEFAULT_WIDTHS = ListWidths(9, 9)
"""finger's widths when no login or name is longer than 8 characters."""


# utmp and lastlog: bytes in, values out


def _field(raw: bytes) -> str:
    """A NUL-padded C string as text: it ends at the first NUL, as finger reads it."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def parse_utmp(data: bytes) -> tuple[tuple[Session, ...], bool]:
    """The login sessions in utmp bytes, and whether they end in a partial record (ignored)."""
    whole = len(data) - len(data) % UTMP_RECORD.size
    sessions = []
    for fields in UTMP_RECORD.iter_unpack(data[:whole]):
        kind, pid, line, _, user, host, _, _, _, seconds, microseconds = fields[:11]
        name = user.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")  # as pwd decodes a login
        if kind == USER_PROCESS and name:
            sessions.append(Session(name, _field(line), _field(host), seconds + microseconds / 1e6, pid))
    return tuple(sessions), whole != len(data)


def parse_lastlog_record(data: bytes) -> LastLogin | None:
    """One lastlog record, or None when it is short or says "never" (time 0)."""
    if len(data) < LASTLOG_RECORD.size:
        return None
    when, line, host = LASTLOG_RECORD.unpack_from(data)
    if when == 0:
        return None
    return LastLogin(float(when), _field(line), _field(host))


# the files


class _NotRegular(OSError):
    """The path ends at something other than a regular file."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def _open_regular(path: str) -> int:
    """A descriptor on ``path``, checked after opening (nothing can be swapped in) to be a regular file.

    It is checked before opening too, so that a path naming a device by
    mistake is never opened: opening some devices (a tape, a watchdog)
    acts on them.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise _NotRegular(f"is a {_kind(mode)}, not a regular file")
    descriptor = os.open(path, OPEN_FLAGS)
    try:
        mode = os.fstat(descriptor).st_mode
    except OSError:
        os.close(descriptor)
        raise
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise _NotRegular(f"is a {_kind(mode)}, not a regular file")
    return descriptor


def _read_up_to(descriptor: int, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = os.read(descriptor, min(remaining, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def read_utmp(path: str, limit: int = UTMP_LIMIT) -> tuple[tuple[Session, ...], str | None]:
    """The sessions in the utmp file at ``path``, and a one-line reason when something was wrong.

    A file that cannot be read as a regular file gives no sessions; one
    past ``limit`` bytes, or ending in a partial record, gives the whole
    records it has.  Never raises: the caller logs the reason once, with
    the path, which the reason leaves out.
    """
    try:
        descriptor = _open_regular(path)
    except OSError as error:
        return (), _reason(error)
    try:
        data = _read_up_to(descriptor, limit + 1)
    except OSError as error:
        return (), _reason(error)
    finally:
        os.close(descriptor)
    if len(data) > limit:
        kept = limit - limit % UTMP_RECORD.size
        sessions, _ = parse_utmp(data[:kept])
        return sessions, f"larger than {limit} bytes: only its first {kept // UTMP_RECORD.size} records are read"
    sessions, truncated = parse_utmp(data)
    if truncated:
        return sessions, f"ends in a partial record ({len(data) % UTMP_RECORD.size} bytes): ignored"
    return sessions, None


def read_last_login(path: str, uid: int) -> LastLogin | None:
    """The lastlog record of ``uid``, or None: never logged in, or no lastlog worth reading.

    Like finger, a missing or odd lastlog counts as "never": many systems
    keep none, and nothing in it is worth a complaint in the log.
    """
    if uid < 0:
        return None
    try:
        descriptor = _open_regular(path)
    except OSError:
        return None
    try:
        data = os.pread(descriptor, LASTLOG_RECORD.size, uid * LASTLOG_RECORD.size)
    except (OSError, OverflowError):
        return None
    finally:
        os.close(descriptor)
    return parse_lastlog_record(data)


# the terminals


def is_terminal_name(tty: str) -> bool:
    """True when ``tty`` may be looked up under /dev (``pts/3``, ``tty1``; never ``../x`` or ``/x``)."""
    return TTY_NAME.fullmatch(tty) is not None


def terminal_state(info: os.stat_result, now: float) -> Terminal:
    """Idle seconds (its access time; never negative) and mesg, from a terminal's ``stat``."""
    return Terminal(max(0.0, now - info.st_atime), info.st_mode & TALKABLE == TALKABLE)


def terminal(tty: str, now: float, dev: str = "/dev") -> Terminal | None:
    """The state of the terminal ``tty`` names, None unless that is a plain name of a character device.

    ``lstat`` rather than ``stat``: a symlink in /dev (``stdin``, ``fd/0``)
    leads to whatever the daemon has open, never to a user's terminal.
    """
    if not is_terminal_name(tty):
        return None
    try:
        info = os.lstat(os.path.join(dev, tty))
    except (OSError, ValueError):
        return None
    if not stat.S_ISCHR(info.st_mode):
        return None
    return terminal_state(info, now)


# layout


def _shown(text: str) -> str:
    """The text as the reader will see it, so widths count what is shown; a TAB would break the columns."""
    return visible(text).replace("\t", "^I")


def _moment(when: float, localtime: LocalTime) -> time.struct_time | None:
    try:
        return localtime(when)
    except (OverflowError, OSError, ValueError):
        return None


def format_time(when: float, year: bool, *, localtime: LocalTime = time.localtime) -> str:
    """``Mon Nov 30 22:10 (UTC)``, or with the year before the zone: finger's ``%a %b %e %R [%Y ](%Z)``.

    The names are English whatever the locale, as finger prints them in
    the C locale that in.fingerd gives it.
    """
    moment = _moment(when, localtime)
    if moment is None:
        return f"(time {when:g})"
    text = f"{WEEKDAYS[moment.tm_wday]} {MONTHS[moment.tm_mon - 1]} {moment.tm_mday:2d}"
    text += f" {moment.tm_hour:02d}:{moment.tm_min:02d}"
    if year:
        text += f" {moment.tm_year}"
    return f"{text} ({moment.tm_zone})"


def format_idle(seconds: float | None, *, long: bool = False) -> str:
    """Idle time as the list's 5-character column (``long=False``) or as the long form's words.

    The column: blank under a minute, ``   12`` minutes, `` 1:05``, ``   3d``.
    The words: ``5 minutes 30 seconds idle``, ``2 hours 5 minutes idle``,
    ``3 days 4 hours idle`` (finger drops the smallest units as they stop
    mattering), and nothing under a second or when unknown.
    """
    whole = 0 if seconds is None else max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if long:
        return _idle_words(days, hours, minutes, secs)
    if days:
        return f"{min(days, 9999):4d}d"
    if hours:
        return f"{hours:2d}:{minutes:02d}"
    return f"{minutes:5d}" if minutes else "     "


def _idle_words(days: int, hours: int, minutes: int, secs: int) -> str:
    def count(number: int, unit: str) -> str:
        return f"{number} {unit}" + ("" if number == 1 else "s")

    words = []
    if days:
        words.append(count(days, "day"))
    if hours:
        words.append(count(hours, "hour"))
    if minutes and not days:
        words.append(count(minutes, "minute"))
    if secs and not days and not hours:
        words.append(count(secs, "second"))
    return " ".join(words + ["idle"]) if words else ""


def session_lines(
    session: Session,
    idle: float | None,
    show_hosts: bool,
    now: float | None = None,
    *,
    tty_width: int = 0,
    writable: bool = True,
    localtime: LocalTime = time.localtime,
) -> list[str]:
    """finger -l's lines for one session: ``On since ...``, the idle time, ``(messages off)``.

    The idle time follows the terminal, padded so that the idle times of
    the user's sessions line up (``tty_width``: the widest of their
    terminal names, see `widest_tty`), or goes on a line of its own after a
    host, as finger does.  Hosts are left out unless ``show_hosts``.
    ``now`` changes nothing: unlike a last login, finger shows no year
    for a session however old; it is taken so that every formatter is
    called alike.
    """
    tty = _shown(session.tty)
    host = _shown(session.host) if show_hosts else ""
    since = format_time(session.since, False, localtime=localtime)
    lines = [f"On since {since} on {tty}" + (f" from {host}" if host else "")]
    words = format_idle(idle, long=True)
    if words:
        padded = " " * (max(tty_width, len(tty)) - len(tty) + 3) + words
        if host:
            lines.append(padded)
        else:
            lines[-1] += padded
    if not writable:
        if words:
            lines.append("     (messages off)")
        else:
            lines[-1] += " (messages off)"
    return lines


def widest_tty(sessions: Iterable[Session]) -> int:
    """The widest terminal name (as shown) among one user's sessions, for `session_lines`."""
    return max((len(_shown(session.tty)) for session in sessions), default=0)


def login_lines(
    sessions: Sequence[tuple[Session, Terminal | None]],
    show_hosts: bool,
    *,
    localtime: LocalTime = time.localtime,
) -> list[str]:
    """finger -l's lines for all of one user's sessions (each with its `terminal`, or None when unknown)."""
    width = widest_tty(session for session, _ in sessions)
    lines = []
    for session, state in sessions:
        idle = None if state is None else state.idle
        writable = True if state is None else state.writable
        lines += session_lines(session, idle, show_hosts, tty_width=width, writable=writable, localtime=localtime)
    return lines


def last_login_lines(
    last: LastLogin | None,
    show_hosts: bool,
    now: float,
    *,
    localtime: LocalTime = time.localtime,
) -> list[str]:
    """finger -l's line for a user who is not logged in: ``Never logged in.`` or ``Last login ...``.

    The year is shown once the login is half a year old, as finger does.
    """
    if last is None:
        return ["Never logged in."]
    shown = format_time(last.when, now - last.when >= HALF_YEAR, localtime=localtime)
    line = f"Last login {shown} on {_shown(last.tty)}"
    if show_hosts and last.host:
        line += f" from {_shown(last.host)}"
    return [line]


def format_phone(number: str) -> str:
    """A phone number as finger shows it: 7, 10 or 11 digits get dashes, 4 or 5 an ``x``; anything else as is."""
    if not (number.isascii() and number.isdigit()):
        return number
    if len(number) == 11:
        return f"+{number[0]}-{number[1:4]}-{number[4:7]}-{number[7:]}"
    if len(number) == 10:
        return f"{number[:3]}-{number[3:6]}-{number[6:]}"
    if len(number) == 7:
        return f"{number[:3]}-{number[3:]}"
    if len(number) == 5:
        return f"x{number[0]}-{number[1:]}"
    if len(number) == 4:
        return f"x{number}"
    return number


def list_widths(people: Iterable[tuple[str, str]], screen_width: int = SCREEN_WIDTH) -> ListWidths:
    """The Login and Name widths finger chooses for these (login, real name) pairs.

    Each fits the longest entry, at least 8 (netkit's ``sizeof("Login  ")``),
    one more when there is room, and the names give way so that the line
    fits ``screen_width``.  With no entries: 9 and 9.
    """
    login = name = len("Login  ") + 1
    for person_login, real_name in people:
        login = max(login, len(_shown(person_login)))
        name = max(name, len(_shown(real_name)) or 1)
    space = screen_width - 50
    if login + name > space:
        name = max(1, space - login)
    if login + name < space - 2:
        login, name = login + 1, name + 1
    return ListWidths(login, name)


def list_header(widths: ListWidths = DEFAULT_WIDTHS) -> str:
    """``Login     Name       Tty      Idle  Login Time   Office     Office Phone`` (at the default widths)."""
    return f"{'Login':<{widths.login}} {'Name':<{widths.name}} {LIST_COLUMNS}"


def _cell(text: str, width: int) -> str:
    """A column of exactly ``width`` characters: longer text is cut, as finger's ``%-*.*s`` does."""
    return _shown(text)[:width].ljust(width)


def list_line(
    login: str,
    real_name: str,
    session: Session | LastLogin | None,
    idle: float | None,
    show_hosts: bool,
    now: float,
    office: str = "",
    office_phone: str = "",
    *,
    writable: bool = True,
    widths: ListWidths = DEFAULT_WIDTHS,
    localtime: LocalTime = time.localtime,
) -> str:
    """One line of the list under `list_header`, for a session, a last login, or nobody (None).

    After the time comes the host in parentheses when hosts are shown and
    the session has one, else the office and its phone (the GECOS fields).
    A ``*`` before the terminal means mesg n; trailing blanks are dropped.
    """
    line = f"{_cell(login, widths.login)} {_cell(real_name, widths.name)} "
    if session is None:
        line += "  *     *  No logins   "
    else:
        line += _when_cell(session, idle, writable, now, localtime)
    host = _shown(session.host) if session is not None and show_hosts else ""
    if host:
        line += f" ({host})"
    else:
        line += _office_cells(office, office_phone)
    return line.rstrip()


def _when_cell(
    session: Session | LastLogin, idle: float | None, writable: bool, now: float, localtime: LocalTime
) -> str:
    """The mesg mark, terminal, idle and login time columns."""
    logged_in = isinstance(session, Session)
    since = session.since if isinstance(session, Session) else session.when
    cells = "*" if logged_in and not writable else " "
    cells += f"{_cell(session.tty, 7)} " if session.tty else " " * 8
    cells += format_idle(idle) + "  " if logged_in else "    *  "
    moment = _moment(since, localtime)
    if moment is None:
        return cells + "?"
    cells += f"{MONTHS[moment.tm_mon - 1]} {moment.tm_mday:2d}"
    if now - since >= HALF_YEAR:
        return cells + f"  {moment.tm_year:4d}"
    return cells + f" {moment.tm_hour:02d}:{moment.tm_min:02d}"


def _office_cells(office: str, office_phone: str) -> str:
    cells = ""
    if office or office_phone:
        cells += f" {_cell(office, 10)}"
    if office_phone:
        cells += f" {_shown(format_phone(office_phone))[:14]}"
    return cells
