"""``python -m bpbench``: the command line."""

import sys

from bpbench.experiments.front.cli import main

sys.exit(main())
