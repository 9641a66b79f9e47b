"""Run fingerd.py, reporting on stderr every socket it binds or connects.

``--check-config`` promises to bind nothing; an audit hook sees every
``bind`` and ``connect`` the interpreter makes, whichever module makes it.
"""

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY = str(ROOT / "fingerd.py")


def report_sockets(event: str, args: tuple) -> None:
    if event in ("socket.bind", "socket.connect"):
        sys.stderr.write(f"SOCKET {event} {args[1]!r}\n")


sys.addaudithook(report_sockets)
sys.path.insert(0, str(ROOT))
sys.argv = [ENTRY, *sys.argv[1:]]
runpy.run_path(ENTRY, run_name="__main__")
