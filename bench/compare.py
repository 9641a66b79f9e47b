"""A/B comparison: fingerd from several source trees beside Twisted, the plain loop and C.

For judging a change to the fast path: this machine's figures drift by
±10% between runs, so a change is measured only against another tree in
the same run, rounds alternating.  Check out the other tree with
``git worktree add /tmp/before HEAD~1``, then:

    python3 bench/compare.py --concurrency 50 now=.:info before=/tmp/before:info

Each tree is given as NAME=PATH:LOG_LEVEL (``info`` logs every query,
``warning`` does not).

The figure to judge by is the server's CPU time per connection answered:
utime+stime of the server process (all its threads) from /proc/PID/stat,
read around each run and divided by the connections the load generator had
answered.  On this 2-core machine an unpinned server and the load generator
fight over both cores, so conn/s is as much the load generator's figure and
the scheduler's as the server's, and a ratio of rates mostly measures noise;
the CPU a server spends on a connection is its own cost.  Each server is
pinned to core 0 and the load generator to core 1 (``--no-pin`` turns that
off), so that neither takes the other's core and the scheduler does not move
the server between caches mid-run.  Pinned, a server keeps core 0 nearly
busy (92-98%), so its conn/s comes close to the inverse of its CPU per
connection.  Both figures drift from run to run as the machine's load
does (Twisted's CPU per connection has read 44 to 70 µs at c=50): compare
trees within one run, never across runs.  The CPU time comes in clock ticks of
10 ms, so runs must last seconds: the default 3 s at 10,000 conn/s or more
resolves it to 0.3 µs per connection or better.

Prints, per tree and for each peer of `run.peers`, the median over rounds
of CPU µs per connection, that figure divided by Twisted's and by the plain
loop's (lower is better), conn/s and p99; and the errors summed over all
rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import run


def tree_server(spec: str, status: Path) -> run.Server:
    name, _, rest = spec.partition("=")
    root, _, level = rest.rpartition(":")
    if not name or not root or level not in ("info", "warning"):
        raise SystemExit(f"compare: {spec!r} is not NAME=PATH:info or NAME=PATH:warning")
    port = run.free_port()
    command = run.fingerd_command(port, status, level)
    command[1] = str(Path(root).resolve() / "fingerd.py")
    return run.Server(name, command, port)


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(figures[key] for figures in runs)


def table(results: dict[str, list[dict[str, float]]]) -> str:
    twisted, plain = median(results["twisted"], "cpu_us"), median(results["plain loop"], "cpu_us")
    rows = [
        "| server | CPU µs/conn | ÷ Twisted | ÷ plain loop | conn/s | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        cpu = median(runs, "cpu_us")
        errors = int(sum(figures["errors"] for figures in runs))
        rows.append(
            f"| {name} | {cpu:.1f} | {cpu / twisted:.2f} | {cpu / plain:.2f} | {median(runs, 'rate'):,.0f} | "
            f"{median(runs, 'p99_ms'):.2f} | {errors} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", metavar="NAME=PATH:LEVEL")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--no-pin", action="store_true", help="leave the servers and the load generator unpinned")
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fingerd-compare-"))
    status = workdir / "status"
    run.write_status(status)
    loadgen = run.build_loadgen(workdir)
    servers = [tree_server(spec, status) for spec in options.trees] + run.peers(status, workdir)
    loadgen_core = run.pinned(servers, not options.no_pin)
    try:
        for server in servers:
            server.start()
        results: dict[str, list[dict[str, float]]] = {server.name: [] for server in servers}
        for round_number in range(options.rounds):
            shift = round_number % len(servers)
            for server in servers[shift:] + servers[:shift]:
                figures = run.measured_load(server, loadgen, options.concurrency, options.seconds, loadgen_core)
                results[server.name].append(figures)
    finally:
        for server in servers:
            server.stop()
    pinning = "unpinned" if loadgen_core is None else f"servers on core {run.SERVER_CORE}, load generator on core {loadgen_core}"
    print(f"{platform.python_implementation()} {platform.python_version()}, c={options.concurrency}, {options.rounds} rounds of {options.seconds:g} s, {pinning}; "
          f"CPU time in ticks of {1000 / os.sysconf('SC_CLK_TCK'):g} ms\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
