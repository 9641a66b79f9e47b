#!/usr/bin/env python3
"""Run the finger daemon from a checkout: ``python fingerd.py -c /etc/fingerd.conf``."""

import sys

from fingerd.app import main

if __name__ == "__main__":
    sys.exit(main())
