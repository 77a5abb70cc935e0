"""``python -m asyncthrift.bulk run IN.jsonl -o OUT.jsonl``: the bulk runner on its own."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
