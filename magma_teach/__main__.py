"""``python -m magma_teach``: the command line of :mod:`magma_teach.cli` (its ``run``)."""

import sys

try:
    from magma_teach.cli import run
except KeyboardInterrupt:  # Ctrl-C while Python was still importing: one line, as during a run
    sys.stderr.write("python -m magma_teach: interrupted (Ctrl-C)\n")
    sys.exit(130)
run()
