"""Run fingerd.py, reporting every module imported after the privilege drop.

After the drop the daemon may be unable to read its interpreter's files, so
a lazy import that works in development fails in production.  This wrapper
makes every such import visible on stderr, whatever the interpreter's
permissions.
"""

import os
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY = str(ROOT / "fingerd.py")


def report_late_imports(event: str, args: tuple) -> None:
    """Modules built into the interpreter need no file, so only the others count."""
    if event == "import" and os.geteuid() != 0 and args[0] not in sys.builtin_module_names:
        sys.stderr.write(f"IMPORT AFTER DROP: {args[0]}\n")


sys.addaudithook(report_late_imports)
sys.path.insert(0, str(ROOT))
sys.argv = [ENTRY, *sys.argv[1:]]
runpy.run_path(ENTRY, run_name="__main__")
