"""`python -m asyncthrift ...` is the same command line as `asyncthrift ...`."""

import sys

from .tools.cli import main

sys.exit(main())
