"""How an interrupted command ends: one line on stderr, then death by SIGINT.

A Unix program stopped by Ctrl-C should end *by the signal*, not with ``exit(130)``: a shell reports
both as 130, but only the signal makes a calling shell loop stop instead of going on to its next
command. This module imports nothing but the standard library, so that ``python -m magma_teach`` can
end this way even when the Ctrl-C lands while the command line itself is still being imported.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_CODE = 130  # what a shell reports for a process ended by SIGINT (128 + 2)


def end_by_sigint() -> None:
    """Flush stdout and stderr, then end this process by SIGINT (POSIX); elsewhere, ``exit(130)``."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a handler (Python's own) would turn it into an exception
        os.kill(os.getpid(), signal.SIGINT)
    raise SystemExit(EXIT_CODE)
