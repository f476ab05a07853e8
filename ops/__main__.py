import sys

from ops.cli import run

sys.exit(run(prog_name="python -m ops"))
