"""Benchmarks: what fingerd spends per connection, beside Twisted, a plain Python loop and C.

Every server answers from the same status file on a loopback port; a small C
epoll client (`loadgen.c`, built here with the system compiler) drives one
query per connection at each concurrency level.  The peers, in
``bench/peers``: the Twisted tutorial's finger server, the plainest
single-threaded Python accept/recv/send/close loop, and a C epoll server
with one fixed reply (the limit: only the kernel's work).

The figure that holds is the server's CPU time per connection answered:
utime+stime of the server process, all its threads, from /proc/PID/stat,
read around each run and divided by the connections the load generator had
answered.  On a 2-core machine every server's conn/s is bounded by the load
generator, so rates mostly measure it; the CPU a server spends on a
connection is its own.  Each server is pinned to core 0 and the load
generator to core 1 (``--no-pin`` turns that off), so neither takes the
other's core.  Rounds alternate the order of the servers and the median
round is reported, so a noisy machine hurts every server alike.  CPU time
comes in 10 ms clock ticks, so a 3 s run at 10,000 conn/s or more resolves
it to 0.3 µs per connection or better.

Then fingerd alone: 300 idle clients held open during a run, a
100,000-user reload (and the lookups made meanwhile), and the delay from
renaming a new status file into place to the new status being served.

    python3 bench/run.py                 # full run, about six minutes
    python3 bench/run.py --quick         # one short round, for a smoke test

Prints markdown tables and writes bench/results.png.  Needs gcc, Twisted and
matplotlib (``pip install '.[bench]'``).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from fingerd.users.statusfile import parse_status_file  # noqa: E402
from fingerd.users.table import UserTable  # noqa: E402

LEVELS = (1, 10, 50, 200)
HEADLINE_LEVEL = 50
USERS = 1000
SERVER_CORE, LOADGEN_CORE = 0, 1


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    process: subprocess.Popen | None = None
    runs: dict[int, list[dict[str, float]]] = field(default_factory=dict)
    core: int | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL, preexec_fn=on_core(self.core)
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"alice\r\n")
                    if sock.recv(100):
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()  # one that runs but never answers would otherwise outlive the bench, on its core
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def memory(self, field_name: str = "VmHWM") -> float:
        """Resident memory in MiB from /proc (VmHWM: the peak so far)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    def median(self, level: int, key: str) -> float:
        return statistics.median(run[key] for run in self.runs[level])


def on_core(core: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child to one core before it runs (None: no pinning).

    Pinned before exec, so every thread it starts inherits the mask: pinning a
    running server with ``sched_setaffinity(pid)`` would move only its main
    thread, and fingerd has started its accepting and log threads by then.
    """
    if core is None:
        return None
    return lambda: os.sched_setaffinity(0, {core})


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads, from /proc/PID/stat; in clock ticks (10 ms here).

    The command name (field 2) is in parentheses and may hold spaces or
    parentheses of its own, so the fields are counted from the last ')':
    what follows it starts at field 3, which puts utime (14) and stime (15)
    at 11 and 12.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build(source: Path, workdir: Path) -> str:
    """Compile one C file of the bench with gcc; the path of the program."""
    binary = workdir / source.stem
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
    return str(binary)


def build_loadgen(workdir: Path) -> str:
    return build(BENCH / "loadgen.c", workdir)


def load(
    loadgen: str, port: int, concurrency: int, seconds: float, query: str = "alice", core: int | None = None
) -> dict[str, float]:
    output = subprocess.run(
        [loadgen, str(port), str(concurrency), str(seconds), query],
        capture_output=True, text=True, check=True, preexec_fn=on_core(core),
    ).stdout
    return {key: float(value) for key, value in (pair.split("=") for pair in output.split())}


def measured_load(
    server: Server, loadgen: str, concurrency: int, seconds: float, core: int | None = None
) -> dict[str, float]:
    """`load`, plus ``cpu_us``: the server's CPU time in µs per connection the load generator had answered.

    The CPU time is read just before and just after the run, so it also
    holds what the server did on its own meanwhile (its log thread's ticks,
    the status-file watcher): a small, steady share, the same in every round.
    With 10 ms ticks a run needs a few seconds (a 3 s run at 10,000 conn/s
    resolves it to about 0.3 µs in 100 µs or more).
    """
    before = cpu_seconds(server.process.pid)
    figures = load(loadgen, server.port, concurrency, seconds, core=core)
    used = cpu_seconds(server.process.pid) - before
    figures["cpu_us"] = used * 1e6 / figures["conns"] if figures["conns"] else math.nan
    return figures


def fingerd_command(port: int, status: Path, log_level: str) -> list[str]:
    identity = ["--user", "root", "--group", "root"] if os.geteuid() == 0 else []
    return [
        sys.executable, str(ROOT / "fingerd.py"), "--bind", "127.0.0.1", "--finger-port", str(port),
        "--status-file", str(status), "--web-port", "0", "--setter-socket", "", "--log-level", log_level,
        "--log-file", os.devnull, "--max-per-address", "0", *identity,
    ]


def write_status(path: Path) -> None:
    """The status file every server answers from: `USERS` users, and alice, who is asked for."""
    path.write_text("".join(f"user{i}: status {i}\n" for i in range(USERS)) + "alice: Writing the finger daemon\n")


def peer(name: str, script: str, port: int, status: Path) -> Server:
    """A peer server from ``bench/peers``, started as ``script PORT STATUS_FILE``."""
    return Server(name, [sys.executable, str(BENCH / "peers" / script), str(port), str(status)], port)


def peers(status: Path, workdir: Path) -> list[Server]:
    """Twisted, the plain Python loop and the C server, each on a port of its own."""
    c_server, c_port = build(BENCH / "peers" / "c_server.c", workdir), free_port()
    return [
        peer("twisted", "twisted_finger.py", free_port(), status),
        peer("plain loop", "plain_loop.py", free_port(), status),
        Server("C epoll", [c_server, str(c_port)], c_port),
    ]


def pinned(servers: list[Server], pin: bool) -> int | None:
    """Pin every server to `SERVER_CORE`; the core for the load generator (None: unpinned)."""
    if not pin:
        return None
    if not {SERVER_CORE, LOADGEN_CORE} <= os.sched_getaffinity(0):
        raise SystemExit(f"bench: pinning needs cores {SERVER_CORE} and {LOADGEN_CORE}; use --no-pin")
    for server in servers:
        server.core = SERVER_CORE
    return LOADGEN_CORE


def throughput(servers: list[Server], loadgen: str, rounds: int, seconds: float, core: int | None) -> None:
    for level in LEVELS:
        for server in servers:
            server.runs[level] = []
        for round_number in range(rounds):
            shift = round_number % len(servers)
            for server in servers[shift:] + servers[:shift]:
                server.runs[level].append(measured_load(server, loadgen, level, seconds, core))
        print(f"  concurrency {level}: done", file=sys.stderr)


def named(servers: list[Server], name: str) -> Server:
    return next(server for server in servers if server.name == name)


def throughput_table(servers: list[Server]) -> str:
    """Per level and server: the rate, latency, and CPU per connection beside Twisted's and the plain loop's."""
    twisted, plain = named(servers, "twisted"), named(servers, "plain loop")
    rows = [
        "| server | conc. | CPU µs/conn | ÷ Twisted | ÷ plain loop | conn/s | p50 ms | p99 ms | max ms | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in LEVELS:
        for server in servers:
            cpu = server.median(level, "cpu_us")
            errors = int(sum(run["errors"] for run in server.runs[level]))
            rows.append(
                f"| {server.name} | {level} | {cpu:.1f} | {cpu / twisted.median(level, 'cpu_us'):.2f} | "
                f"{cpu / plain.median(level, 'cpu_us'):.2f} | {server.median(level, 'rate'):,.0f} | "
                f"{server.median(level, 'p50_ms'):.2f} | {server.median(level, 'p99_ms'):.2f} | "
                f"{server.median(level, 'max_ms'):.1f} | {errors} |"
            )
    return "\n".join(rows)


def headline(servers: list[Server], level: int = HEADLINE_LEVEL) -> str:
    """fingerd with its access log, at ``level`` clients: its CPU per connection against each peer's."""
    fingerd = named(servers, "fingerd+log").median(level, "cpu_us")
    ratios = ", ".join(
        f"{fingerd / server.median(level, 'cpu_us'):.2f}x {server.name}'s ({server.median(level, 'cpu_us'):.1f})"
        for server in servers
        if not server.name.startswith("fingerd")
    )
    return f"fingerd+log at c={level}: {fingerd:.1f} CPU µs per connection, {ratios}"


def idle_scenario(server: Server, loadgen: str, seconds: float, core: int | None) -> dict[str, float]:
    baseline = load(loadgen, server.port, 50, seconds, core=core)
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
    try:
        for sock in idle[::2]:
            sock.sendall(b"al")
        # The silent half reaches the daemon only when the kernel's accept deferral (1 s) ends.
        time.sleep(1.5)
        threads = len(os.listdir(f"/proc/{server.process.pid}/task"))
        loaded = load(loadgen, server.port, 50, seconds, core=core)
        rss = server.memory("VmRSS")
    finally:
        for sock in idle:
            sock.close()
    return {
        "p99_no_idle": baseline["p99_ms"], "p99_idle": loaded["p99_ms"], "rate_idle": loaded["rate"], "rss": rss,
        "threads": threads,
    }


def parse_and_swap_seconds(status: bytes) -> float:
    table = UserTable()
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        table.replace(parse_status_file(status).users)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def query(port: int, name: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(name + b"\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def replace_file(path: Path, data: bytes) -> float:
    temporary = path.with_name(".next")
    temporary.write_bytes(data)
    started = time.monotonic()
    os.replace(temporary, path)
    return started


def wait_served(port: int, name: bytes, expected: bytes, started: float, limit: float = 5.0) -> float:
    while query(port, name) != expected:
        if time.monotonic() - started > limit:
            raise RuntimeError(f"{name!r} never became {expected!r}")
    return time.monotonic() - started


def reload_scenario(server: Server, loadgen: str, status_path: Path, core: int | None) -> dict[str, float]:
    big = "".join(f"user{i}: status {i}\n" for i in range(100_000)).encode()
    swap = parse_and_swap_seconds(big)
    during = subprocess.Popen(
        [loadgen, str(server.port), "10", "3", "user5"], stdout=subprocess.PIPE, text=True, preexec_fn=on_core(core)
    )
    time.sleep(0.5)
    started = replace_file(status_path, big)
    served = wait_served(server.port, b"user99999", b"status 99999\r\n", started)
    figures = dict(pair.split("=") for pair in during.communicate()[0].split())
    return {"parse_swap": swap, "rename_to_served": served, "max_during": float(figures["max_ms"])}


def edit_scenario(server: Server, status_path: Path, edits: int) -> dict[str, float]:
    base = status_path.read_bytes()
    delays = []
    for number in range(edits):
        started = replace_file(status_path, base + f"editor: edit {number}\n".encode())
        delays.append(wait_served(server.port, b"editor", f"edit {number}\r\n".encode(), started))
    delays.sort()
    return {"p50": delays[len(delays) // 2] * 1e3, "p99": delays[int(len(delays) * 0.99)] * 1e3, "max": delays[-1] * 1e3}


def chart(servers: list[Server], path: Path, pinning: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (costs, tails) = pyplot.subplots(1, 2, figsize=(11, 4.2))
    for server in servers:
        costs.plot(LEVELS, [server.median(level, "cpu_us") for level in LEVELS], marker="o", label=server.name)
        tails.plot(LEVELS, [server.median(level, "p99_ms") for level in LEVELS], marker="o", label=server.name)
    for axis, title, unit in (
        (costs, "Server CPU per connection (lower is better)", "µs (utime+stime, all threads)"),
        (tails, "p99 latency", "ms"),
    ):
        axis.set_xscale("log")
        axis.set_xticks(LEVELS, [str(level) for level in LEVELS])
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"One finger query per connection, loopback, {pinning} (median of alternating rounds)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="one round of one second, 20 edits")
    parser.add_argument("--no-pin", action="store_true", help="leave the servers and the load generator unpinned")
    parser.add_argument("--chart", default=str(BENCH / "results.png"))
    options = parser.parse_args()
    if options.quick:
        options.rounds, options.seconds, options.edits = 1, 1.0, 20
    if not shutil.which("gcc"):
        print("bench: gcc is needed to build the load generator and the C server", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="fingerd-bench-"))
    status = workdir / "status"
    write_status(status)
    shutil.copy(status, workdir / "status-log")
    loadgen = build_loadgen(workdir)
    ports = [free_port() for _ in range(2)]
    servers = [
        Server("fingerd", fingerd_command(ports[0], status, "warning"), ports[0]),
        Server("fingerd+log", fingerd_command(ports[1], workdir / "status-log", "info"), ports[1]),
        *peers(status, workdir),
    ]
    core = pinned(servers, not options.no_pin)
    pinning = "unpinned" if core is None else f"servers on core {SERVER_CORE}, load generator on core {core}"
    try:
        for server in servers:
            server.start()
        print("throughput:", file=sys.stderr)
        throughput(servers, loadgen, options.rounds, options.seconds, core)
        memory = {server.name: server.memory() for server in servers}
        idle = idle_scenario(servers[0], loadgen, options.seconds, core)
        edits = edit_scenario(servers[0], status, options.edits)
        reload = reload_scenario(servers[0], loadgen, status, core)
        peak = servers[0].memory()
    finally:
        for server in servers:
            server.stop()
    print(f"\n{platform.python_implementation()} {platform.python_version()} ({sys.executable}), "
          f"Twisted {metadata.version('twisted')}, {os.cpu_count()} cores, {pinning}; "
          f"{options.rounds} rounds of {options.seconds:g} s per level; "
          "fingerd without and with its access log (info, to /dev/null)\n")
    print(headline(servers) + "\n")
    print(throughput_table(servers))
    print("\n| server | peak RSS after the throughput runs |\n|---|---|")
    for name, value in memory.items():
        print(f"| {name} | {value:.1f} MiB |")
    print("\n| fingerd scenario | result |\n|---|---|")
    print(f"| p99 at c=50, no idle clients | {idle['p99_no_idle']:.2f} ms |")
    print(
        f"| p99 at c=50, 300 idle clients held | {idle['p99_idle']:.2f} ms ({idle['rate_idle']:,.0f} conn/s, "
        f"{idle['threads']} threads) |"
    )
    print(f"| RSS with 300 idle clients | {idle['rss']:.1f} MiB (peak over the whole run {peak:.1f} MiB) |")
    print(f"| 100,000-user file: parse and swap | {reload['parse_swap'] * 1e3:.0f} ms |")
    print(f"| 100,000-user file: rename to served | {reload['rename_to_served'] * 1e3:.0f} ms |")
    print(f"| max latency of lookups during that reload | {reload['max_during']:.1f} ms |")
    print(f"| rename to served, {options.edits} edits | p50 {edits['p50']:.1f} ms, p99 {edits['p99']:.1f} ms, max {edits['max']:.1f} ms |")
    chart(servers, Path(options.chart), pinning)
    print(f"\nchart: {options.chart}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
