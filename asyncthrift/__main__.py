"""`python -m asyncthrift ...` is the same command line as `asyncthrift ...`."""

import sys

from .cli import main

sys.exit(main())
