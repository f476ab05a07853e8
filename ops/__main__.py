"""``python -m ops``: the ``dedup`` command under its module name."""

import sys

from ops.cli import run

if __name__ == "__main__":
    sys.exit(run(prog_name="python -m ops"))
