"""``python -m podvisor.init``: the same as ``podvisor-init``."""

from __future__ import annotations

import sys

from podvisor.init.entry import init_main

if __name__ == "__main__":
    sys.exit(init_main())
