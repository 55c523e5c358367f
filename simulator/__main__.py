"""`python -m simulator` is the same as the `moesim` console script."""

import sys

from simulator.cli import main

sys.exit(main())
