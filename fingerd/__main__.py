"""``python -m fingerd``: the same as the ``fingerd`` command."""

import sys

from fingerd.app import main

sys.exit(main())
