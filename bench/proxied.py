"""What a trusted proxy's PROXY header costs the server, per connection, beside the same query without one.

The daemon runs pinned to core 0 with ``--proxy-from 127.0.0.1`` (or
without it, for the baseline); this client, pinned to core 1, connects one
connection at a time and reads each reply to the end.  The figure is the
daemon's CPU time (utime+stime, all threads, from /proc/PID/stat) over the
connections, as in `bench/run.py`.  Four ways of asking:

* a plain query, without ``--proxy-from``: the baseline;
* a plain query from an untrusted peer, with ``--proxy-from`` set: the
  cost of the trust test on every connection;
* a v2 header and the query in one segment, from the trusted proxy: the
  accepting thread parses the header and answers from memory;
* the v2 header, then the query 2 ms later, as a balancer sends them: a
  connection thread reads the query.  Its baseline is a plain query sent
  in two pieces 2 ms apart, which also needs a thread.

The last two pace the connections 2 ms apart, so the daemon goes idle
between them and every connection pays its wake-ups: compare them with
each other, not with the back-to-back rows.

    python3 bench/proxied.py [--connections N]
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
QUERY = b"alice\r\n"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def v2_header(source: str) -> bytes:
    body = socket.inet_aton(source) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 4711, 79)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_daemon(status: Path, port: int, proxy: bool) -> subprocess.Popen:
    command = [
        "taskset", "-c", "0", sys.executable, str(ROOT / "fingerd.py"), "--status-file", str(status),
        "--bind", "127.0.0.1", "--finger-port", str(port), "--web-port", "0", "--setter-socket", "",
        "--user", "root", "--max-per-address", "0", "--log-level", "warning",
    ]
    if proxy:
        command += ["--proxy-from", "127.0.0.1"]
    daemon = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return daemon
        except OSError:
            time.sleep(0.05)
    daemon.kill()
    raise RuntimeError("the daemon did not start")


def ask(port: int, source: str, pieces: tuple[bytes, ...], pause: float) -> None:
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        for number, piece in enumerate(pieces):
            if number:
                time.sleep(pause)
            sock.sendall(piece)
        while sock.recv(4096):
            pass


def measure(status: Path, proxy: bool, source: str, pieces: tuple[bytes, ...], pause: float, count: int) -> float:
    """Microseconds of the daemon's CPU per connection, after a warm-up."""
    port = free_port()
    daemon = start_daemon(status, port, proxy)
    try:
        for _ in range(200):
            ask(port, source, pieces, pause)
        before = cpu_seconds(daemon.pid)
        for _ in range(count):
            ask(port, source, pieces, pause)
        return (cpu_seconds(daemon.pid) - before) / count * 1e6
    finally:
        daemon.terminate()
        daemon.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=4000, help="per back-to-back row; paced rows use 3/8")
    options = parser.parse_args()
    os.sched_setaffinity(0, {1})
    header = v2_header("192.0.2.7")
    rows = [
        ("plain query, no --proxy-from", False, "127.0.0.2", (QUERY,), 0.0),
        ("plain query from an untrusted peer, --proxy-from set", True, "127.0.0.2", (QUERY,), 0.0),
        ("v2 header + query in one segment, from the proxy", True, "127.0.0.1", (header + QUERY,), 0.0),
        ("paced: plain query in two pieces 2 ms apart, no --proxy-from", False, "127.0.0.2", (b"ali", b"ce\r\n"), 0.002),
        ("paced: v2 header, query 2 ms later, from the proxy", True, "127.0.0.1", (header, QUERY), 0.002),
    ]
    with tempfile.TemporaryDirectory() as directory:
        status = Path(directory) / "status"
        status.write_text("alice: at lunch\n")
        print(f"CPython {sys.version.split()[0]}; daemon on core 0, client on core 1; CPU in ticks of {1000 // TICK} ms\n")
        print("| connection | CPU µs/conn |\n|---|---|")
        for name, proxy, source, pieces, pause in rows:
            count = options.connections if not pause else options.connections * 3 // 8
            print(f"| {name} | {measure(status, proxy, source, pieces, pause, count):.1f} |", flush=True)


if __name__ == "__main__":
    main()
