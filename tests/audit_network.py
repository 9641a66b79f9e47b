"""Run fingerd.py, reporting every name lookup and outbound connection on stderr.

Used to prove that a query leads to no DNS lookup and no connection: the
audit events are raised by the socket module itself, whatever code calls it.
"""

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY = str(ROOT / "fingerd.py")
WATCHED = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.connect")


def report_network(event: str, args: tuple) -> None:
    if event in WATCHED:
        detail = args[1] if event == "socket.connect" else args
        sys.stderr.write(f"NETWORK {event} {detail!r}\n")


sys.addaudithook(report_network)
sys.path.insert(0, str(ROOT))
sys.argv = [ENTRY, *sys.argv[1:]]
runpy.run_path(ENTRY, run_name="__main__")
