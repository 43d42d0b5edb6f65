"""How an interrupted command ends: one line on stderr, then death by SIGINT.

A Unix program stopped by Ctrl-C should end *by the signal*, not with ``exit(130)``: a shell reports
both as 130, but only the signal makes a calling shell loop stop instead of going on to its next
command. This module imports nothing but the standard library, so that ``python -m magma_teach`` can
end this way even when the Ctrl-C lands while the command line itself is still being imported.

Python turns a Ctrl-C into a ``KeyboardInterrupt`` raised wherever the main thread happens to be, and
library code does not always let it through: numpy's C import reports it as an ``ImportError``
("PyCapsule_Import could not import module "datetime""), and C code that clears errors, or a
destructor ("Exception ignored in …"), drops it. :func:`watch` therefore *remembers* every Ctrl-C, so
that :func:`received` can tell an error that stands for one, and :func:`check` can raise a dropped one
again at the next step (:func:`magma_teach.utils.phase` checks at both ends of every step).

A run that is *killed* instead (``kill``, a notebook kernel restarted) gets no Ctrl-C, and neither do
the worker processes that train its models: :func:`end_with_parent` makes each worker end itself once
the run that started it is gone.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

EXIT_CODE = 130  # what a shell reports for a process ended by SIGINT (128 + 2)
_received = [False]  # whether a Ctrl-C came since watch()


def _on_sigint(signum, frame) -> None:
    _received[0] = True
    raise KeyboardInterrupt  # what Python's own handler does


def _unraisable(hook):
    def quiet_on_interrupt(unraisable) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            hook(unraisable)  # a dropped Ctrl-C is no error to print: check() raises it again
    return quiet_on_interrupt


def watch() -> None:
    """From now on, remember every Ctrl-C this process gets, and print no "Exception ignored" for one.

    For process entries only (the command line); a SIGINT that is ignored (a background job) stays so.
    """
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
        sys.unraisablehook = _unraisable(sys.unraisablehook)


def received() -> bool:
    """Whether a Ctrl-C came since :func:`watch` (never, without it)."""
    return _received[0]


def stands_for_one(err: BaseException) -> bool:
    """Whether ``err`` is a Ctrl-C: a ``KeyboardInterrupt``, or any error raised once one had come."""
    return isinstance(err, KeyboardInterrupt) or received()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C came (one a library dropped, since the first one ends the run)."""
    if received():
        raise KeyboardInterrupt


def end_by_sigint() -> None:
    """Flush stdout and stderr, then end this process by SIGINT (POSIX); elsewhere, ``exit(130)``."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a handler (Python's own) would turn it into an exception
        os.kill(os.getpid(), signal.SIGINT)
    raise SystemExit(EXIT_CODE)


def end_with_parent(every: float = 1.0) -> threading.Thread:
    """End this process at once (exit status 1) when the process that started it is gone.

    For the workers of a process pool (:func:`magma_teach.experiments.context.train_all` calls it as
    each one starts). A Ctrl-C reaches the whole process group, but a ``kill`` of the run, or of the
    notebook kernel that runs it, reaches only that process: without this, its workers finish the jobs
    already handed to them and then wait for more forever, each holding its copy of the data. A daemon
    thread checks every ``every`` seconds whether the parent process id has changed (an orphan is
    adopted by another process); it never touches the worker's numbers.
    """
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)  # no clean-up to wait for: nobody is left to receive this worker's results

    thread = threading.Thread(target=watch_parent, name="end-with-parent", daemon=True)
    thread.start()
    return thread
