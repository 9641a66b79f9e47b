"""Run fingerd.py, reporting on stderr every socket it binds or connects.

``--check-config`` promises to bind nothing; an audit hook sees every
``bind`` and ``connect`` the interpreter makes, whichever module makes it.
A bind to port 0 is left out: no client can reach such a socket, and
urllib3 (under `requests`) makes one at import to learn whether IPv6 works.
"""

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY = str(ROOT / "fingerd.py")


def report_sockets(event: str, args: tuple) -> None:
    if event not in ("socket.bind", "socket.connect"):
        return
    address = args[1]
    if event == "socket.bind" and isinstance(address, tuple) and address[1] == 0:
        return
    sys.stderr.write(f"SOCKET {event} {address!r}\n")


sys.addaudithook(report_sockets)
sys.path.insert(0, str(ROOT))
sys.argv = [ENTRY, *sys.argv[1:]]
runpy.run_path(ENTRY, run_name="__main__")
