#!/usr/bin/env python3
"""Run fingerd from a checkout: ``python fingerd.py -c /etc/fingerd.conf``, or ``python fingerd.py set MESSAGE``."""

import sys

from fingerd.cli import main

if __name__ == "__main__":
    sys.exit(main())
