"""``python -m magma_teach``: the command line of :mod:`magma_teach.cli` (its ``run``)."""

import sys

from magma_teach import interrupt

interrupt.watch()
try:
    from magma_teach.cli import run
except BaseException as err:  # Ctrl-C while Python was still importing: one line, and the same ending as a run's
    if not interrupt.stands_for_one(err):
        raise
    sys.stderr.write("python -m magma_teach: interrupted (Ctrl-C)\n")
    interrupt.end_by_sigint()
run()
