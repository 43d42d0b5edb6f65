"""``python -m magma_teach``: the command line of :mod:`magma_teach.cli` (its ``run``)."""

import sys

from magma_teach.interrupt import end_by_sigint

try:
    from magma_teach.cli import run
except KeyboardInterrupt:  # Ctrl-C while Python was still importing: one line, and the same ending as a run's
    sys.stderr.write("python -m magma_teach: interrupted (Ctrl-C)\n")
    end_by_sigint()
run()
