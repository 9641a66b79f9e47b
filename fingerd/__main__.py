"""``python -m fingerd``: the same as the ``fingerd`` command."""

import sys

from fingerd.cli import main

sys.exit(main())
