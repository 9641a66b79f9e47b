"""A/B comparison: fingerd from several source trees beside the Twisted peer.

For judging a change to the fast path: this machine's figures drift by
±10% between runs, so a change is measured only against another tree in
the same run, rounds alternating.  Check out the other tree with
``git worktree add /tmp/before HEAD~1``, then:

    python3 bench/compare.py --concurrency 50 now=.:info before=/tmp/before:info

Each tree is given as NAME=PATH:LOG_LEVEL (``info`` logs every query,
``warning`` does not).  Prints the median rate of each, its ratio to
Twisted, and its median p99.
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", metavar="NAME=PATH:LEVEL")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fingerd-compare-"))
    status = workdir / "status"
    run.write_status(status)
    loadgen = run.build_loadgen(workdir)
    servers = [tree_server(spec, status) for spec in options.trees]
    servers.append(run.peer("twisted", "twisted_finger.py", run.free_port(), status))
    try:
        for server in servers:
            server.start()
        results: dict[str, list[dict[str, float]]] = {server.name: [] for server in servers}
        for round_number in range(options.rounds):
            shift = round_number % len(servers)
            for server in servers[shift:] + servers[:shift]:
                results[server.name].append(run.load(loadgen, server.port, options.concurrency, options.seconds))
    finally:
        for server in servers:
            server.stop()
    baseline = statistics.median(figures["rate"] for figures in results["twisted"])
    print(f"| tree | conn/s | vs Twisted | p99 ms | errors |  (c={options.concurrency}, {options.rounds} rounds)")
    for name, runs in results.items():
        rate = statistics.median(figures["rate"] for figures in runs)
        p99 = statistics.median(figures["p99_ms"] for figures in runs)
        errors = int(sum(figures["errors"] for figures in runs))
        print(f"| {name} | {rate:,.0f} | {rate / baseline:.2f}x | {p99:.2f} | {errors} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
