"""The IRC bot (docs/web-and-irc.md, "The IRC bot"): the tutorial's "announce on IRC", on the `irc` library.

::

    irc-bot thread: loop { connect when due | reactor.process_once(tick) }
        welcome          -> join --irc-channel(s), reset the back-off
        private "alice"  -> private "Status of alice: <first line>"
        "!finger alice" in a channel -> the same answer in the channel
        disconnect       -> try again after 1, 2, 4 ... 60 s
        nick in use      -> nick_, nick__ ...

The `irc` reactor is not thread-safe, so everything that touches it runs in
the bot's one thread; `stop()` only sets an event, and the thread sends
QUIT and closes.  Connecting uses a timeout, so an unreachable server never
holds up shutdown for long.

Replies are made safe for IRC by `irc_line`: control characters in visible
form (so a status cannot smuggle CR LF and a second command), cut to one
line of at most `MAX_REPLY_BYTES`.  Each sender gets a small token bucket,
and the connection as a whole is rate-limited, so the bot cannot be used to
flood a channel or get itself kicked.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

import irc.client
import irc.connection
import irc.strings

from fingerd.finger.answer import LOOKUP_FAILED, NO_SUCH_USER
from fingerd.irc_server import IRCServer
from fingerd.render import visible
from fingerd.sources.directory import Directory, Lookup
from fingerd.threads import join_all

log = logging.getLogger("fingerd.irc")

MAX_REPLY_BYTES = 400
COMMAND = "!finger"


def irc_line(text: str, limit: int = MAX_REPLY_BYTES) -> str:
    """One IRC-safe line: no control characters, at most ``limit`` UTF-8 bytes."""
    safe = visible(text)
    encoded = safe.encode("utf-8")
    if len(encoded) <= limit:
        return safe
    return encoded[: limit - 3].decode("utf-8", "ignore") + "..."


def status_reply(name: str, found: Lookup) -> str:
    """The tutorial's answer: ``Status of NAME: first line``."""
    record = found.record
    if record is None:
        return irc_line(f"Status of {name}: {LOOKUP_FAILED if found.failed else NO_SUCH_USER}")
    status = record.status
    return irc_line(f"Status of {record.name}: {status[0] if status else ''}".rstrip())


class RateLimit:
    """A token bucket per sender: `burst` at once, then one per `interval` seconds."""

    def __init__(self, burst: int = 5, interval: float = 2.0, senders: int = 1000) -> None:
        self.burst, self.interval, self.senders = burst, interval, senders
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, sender: str, now: float) -> bool:
        tokens, last = self._buckets.get(sender, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) / self.interval)
        if len(self._buckets) >= self.senders and sender not in self._buckets:
            self._buckets.clear()
        if tokens < 1:
            self._buckets[sender] = (tokens, now)
            return False
        self._buckets[sender] = (tokens - 1, now)
        return True


class IRCBot:
    """Answers status questions on IRC; `start()` and `stop()` it."""

    tick = 0.2
    connect_timeout = 2.0
    min_backoff = 1.0
    max_backoff = 60.0
    messages_per_second = 2
    quit_message = "fingerd stopping"
    lookup_seconds = 3.0
    """At most this long on one question, so a slow source never holds the bot past a server's PING."""
    name = "irc"

    def __init__(
        self,
        server: IRCServer,
        nick: str,
        channels: list[str],
        directory: Directory,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server
        self.nick = nick
        self.channels = channels
        self.directory = directory
        self.tls = tls
        self.listen_address = server
        self.limits = RateLimit()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="irc-bot", daemon=True)
        self._backoff = self.min_backoff
        self._next_attempt = 0.0

    # -- lifecycle -----------------------------------------------------

    def start(self) -> None:
        self.reactor = irc.client.Reactor()
        self.connection = self.reactor.server()
        for event, handler in (
            ("welcome", self._on_welcome),
            ("privmsg", self._on_private),
            ("pubmsg", self._on_public),
            ("nicknameinuse", self._on_nick_taken),
            ("erroneusnickname", self._on_nick_taken),
            ("disconnect", self._on_disconnect),
        ):
            self.reactor.add_global_handler(event, handler)
        self._thread.start()

    def stop(self, deadline: float) -> None:
        """Say QUIT and end the bot's thread (it notices within `tick`), joined until ``deadline``."""
        self._stopping.set()
        if join_all([self._thread], deadline):
            log.warning("IRC: the bot's thread did not end in time")

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            if not self.connection.is_connected() and time.monotonic() >= self._next_attempt:
                self._connect()
            try:
                self.reactor.process_once(self.tick)
            except Exception:
                log.exception("IRC: error handling a message")
        self._quit()

    def _quit(self) -> None:
        if self.connection.is_connected():
            try:
                self.connection.quit(self.quit_message)
            except irc.client.ServerNotConnectedError:
                pass
            self.connection.disconnect(self.quit_message)

    # -- connecting ----------------------------------------------------

    def _connect(self) -> None:
        try:
            self.connection.connect(
                self.server.host,
                self.server.port,
                self.nick,
                ircname="fingerd status bot",
                connect_factory=self._open_socket,
            )
        except (irc.client.ServerConnectionError, UnicodeError, ValueError) as error:
            log.warning("IRC: cannot connect to %s: %s; next try in %.0f s", self.server, error, self._backoff)
            self._back_off()
            return
        self.connection.set_rate_limit(self.messages_per_second)
        log.info("IRC: connected to %s", self.server)

    def _open_socket(self, address: tuple) -> socket.socket:
        sock = socket.create_connection(address, timeout=self.connect_timeout)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=self.server.host)
        sock.settimeout(None)
        return sock

    def _back_off(self) -> None:
        self._next_attempt = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff)

    # -- events --------------------------------------------------------

    def _on_welcome(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        self._backoff = self.min_backoff
        for channel in self.channels:
            connection.join(channel)
        log.info("IRC: registered as %s, joining %s", connection.get_nickname(), ", ".join(self.channels) or "no channel")

    def _on_disconnect(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        if self._stopping.is_set():
            return
        log.warning("IRC: disconnected from %s; next try in %.0f s", self.server, self._backoff)
        self._back_off()

    def _on_nick_taken(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        current = connection.get_nickname() or self.nick
        connection.nick((current + "_")[:30] if len(current) < 30 else current[:-1] + "_")

    def _on_private(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        sender = event.source.nick
        words = " ".join(event.arguments).split()
        if words:
            self._answer(connection, sender, sender, words[-1] if words[0] == COMMAND else words[0])

    def _on_public(self, connection: irc.client.ServerConnection, event: irc.client.Event) -> None:
        words = " ".join(event.arguments).split()
        if len(words) >= 2 and words[0] == COMMAND:
            self._answer(connection, event.source.nick, event.target, words[1])

    def _answer(self, connection: irc.client.ServerConnection, sender: str, target: str, name: str) -> None:
        if not self.limits.allow(irc.strings.lower(sender), time.monotonic()):
            log.info("IRC: %s is asking too fast; ignored", visible(sender))
            return
        reply = status_reply(name, self.directory.lookup(name, deadline=time.monotonic() + self.lookup_seconds))
        log.info("IRC: %s asked for %s", visible(sender), visible(name[:40]))
        connection.privmsg(target, reply)
