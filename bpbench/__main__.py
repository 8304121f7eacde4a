"""``python -m bpbench``: the command line."""
import sys

from bpbench.experiments.cli import main

sys.exit(main())
