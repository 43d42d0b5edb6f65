"""Small helpers every module needs: seeding, device choice, argument checks, progress and threads.

The checks raise ``ValueError`` messages that name the field and its allowed range, so a reader who
passes ``k_shot=50`` to a task with 20 samples per class learns what to change, not where it crashed.

Progress has two layers, both on stderr:

* :func:`phase` — one line per long step, with its elapsed time
  (``[image-audio] MAGMA: meta-training… done in 21.4 s``), written even when stderr is a pipe or a
  log file, so a run on a busy machine never sits silent;
* :func:`progress` — tqdm bars (``tqdm.auto``: text in terminals, widgets in notebooks).

:func:`show_phases` and :func:`show_progress` hold the policy: an explicit ``progress=True/False``
wins; else ``$MAGMA_TEACH_PROGRESS`` (``0`` silences both, ``1`` forces the lines); else both are
quiet under CI (``$CI`` set: the book is executed and validated that way, so its stored outputs stay
free of timings) and bars appear only in a terminal or a notebook.

Threads: :func:`thread_policy` says how many torch threads a run uses, :func:`use_threads` applies it
for the length of a ``with`` block.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from contextlib import contextmanager

import numpy as np
import torch

from magma_teach import interrupt


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a torch generator seeded the same way.

    With ``deterministic=True`` torch is asked for deterministic kernels where it has them (warning,
    not failing, where it has none), so the same seed on the same machine gives the same numbers.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; ``"cpu"``/``"cuda"``/``"cuda:1"`` as asked.

    Asking for CUDA on a machine without it is an error rather than a silent fallback.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA device; use 'auto' or 'cpu'")
    return torch.device(device)


def _require_number(name: str, value, kind: str) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is a number (not a bool, string or list)."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    try:
        float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {kind}, got {value!r}") from None


def check_positive(name: str, value, integer: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` > 0 (and an integer when asked).

    Text, booleans, lists and ``None`` are refused with the same one-line message, never a ``TypeError``.
    """
    kind = "a positive integer (>= 1)" if integer else "positive (> 0)"
    if integer and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    _require_number(name, value, f"a number, {kind}")
    if not value > 0:
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def check_range(name: str, value, low, high) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a number with ``low <= value <= high``."""
    _require_number(name, value, f"a number in [{low}, {high}]")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


# --------------------------------------------------------------------------- progress

PROGRESS_ENV = "MAGMA_TEACH_PROGRESS"


def progress_env() -> bool | None:
    """``$MAGMA_TEACH_PROGRESS`` read: ``False`` for 0/false/no/off, ``True`` for 1/true/yes/on, ``None``
    when unset, empty or ``auto``; any other value is a ``ValueError`` naming the variable."""
    value = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"${PROGRESS_ENV} must be 0, 1 or auto, got {os.environ[PROGRESS_ENV]!r}")


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (a notebook, Colab), where tqdm.auto draws widgets."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def show_phases(progress: bool | None = None) -> bool:
    """Whether :func:`phase` writes its lines: ``progress`` when given, else ``$MAGMA_TEACH_PROGRESS``,
    else yes unless ``$CI`` is set. Terminals, pipes, log files and notebooks all get the lines."""
    if progress is not None:
        return bool(progress)
    env = progress_env()
    if env is not None:
        return env
    return not os.environ.get("CI")


def show_progress(progress: bool | None = None) -> bool:
    """Whether tqdm bars are drawn: ``progress`` when given; else never with ``$MAGMA_TEACH_PROGRESS=0`` or
    ``$CI`` set, and otherwise only when stderr is a terminal or the code runs in a notebook kernel
    (a bar in a pipe or log file is a stream of carriage returns, not information)."""
    if progress is not None:
        return bool(progress)
    if progress_env() is False or os.environ.get("CI"):
        return False
    return sys.stderr.isatty() or _in_notebook()


def progress(iterable, desc: str, total: int | None = None, show: bool = True):
    """A tqdm bar over ``iterable`` on stderr; ``show=False`` turns it off, else :func:`show_progress` decides."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not (show and show_progress(None)), leave=False)


_PHASES: list[str] = []  # labels of the phases now running, outermost first
_WHOLE_LINES: list[bool] = [False]  # True in worker processes that share stderr: never leave a line open


def phase_whole_lines() -> None:
    """From now on (in this process) :func:`phase` writes only whole lines, at the end of each step:
    for processes that share one stderr with others, where half-written lines would interleave."""
    _WHOLE_LINES[0] = True
_open_line: list[str] = []  # the phase whose "label… " line waits for its "done in" (at most one)


def _write(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _close_open_line() -> None:
    if _open_line:
        _write("\n")
        _open_line.clear()


@contextmanager
def phase(label: str, progress: bool | None = None):
    """Report one long step on stderr: ``with phase("MAGMA: meta-training"): ...``.

    Writes one line, ``"<outer labels> <label>… done in 21.4 s"``, where the outer labels are those of
    the enclosing phases (the runner opens ``[image-audio]``, so a phase opened inside it reads
    ``[image-audio] MAGMA: meta-training… done in 21.4 s``). Without bars the line's start (``label… ``)
    is written and flushed when the step begins, so ``tail -f`` shows what runs now; with bars (a
    terminal) the bar shows that, and the whole line comes at the end, above the bars. If the step
    raises (Ctrl-C included) the open line is ended and no "done" is written. Both ends of a step raise a
    Ctrl-C that a library dropped (:func:`magma_teach.interrupt.check`). Whether anything is
    written follows :func:`show_phases` (``progress``: ``True``/``False``/``None`` = automatic).
    """
    interrupt.check()  # a Ctrl-C that a library dropped ends the run at the next step's edge
    full = " ".join([*_PHASES, label])
    show = show_phases(progress)
    bars = show and (show_progress(progress) or _WHOLE_LINES[0])
    if show and not bars:
        _close_open_line()
        _write(f"{full}… ")
        _open_line.append(full)
    _PHASES.append(label)
    start = time.perf_counter()
    finished = False
    try:
        yield
        interrupt.check()
        finished = True
    finally:
        _PHASES.pop()
        if show and finished:
            done = f"done in {time.perf_counter() - start:.1f} s"
            if _open_line == [full]:
                _write(done + "\n")
                _open_line.clear()
            else:
                _close_open_line()
                if bars and not _WHOLE_LINES[0]:
                    from tqdm.auto import tqdm

                    tqdm.write(f"{full}… {done}", file=sys.stderr)
                else:
                    _write(f"{full}… {done}\n")
        elif show:
            _close_open_line()


class _StderrLines(logging.Handler):
    """Writes each record as one line to the *current* ``sys.stderr`` (notebooks and pytest replace it
    after import, so a stream captured at import time would be the wrong one). It first ends a
    :func:`phase` line left open, and writes through ``tqdm.write`` so that a progress bar on screen
    is moved below the line instead of being broken by it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            _close_open_line()
            tqdm.write(self.format(record), file=sys.stderr)
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def package_logger() -> logging.Logger:
    """The ``magma_teach`` logger, writing ``magma_teach: <message>`` lines on stderr (set up once)."""
    logger = logging.getLogger("magma_teach")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        handler = _StderrLines()
        handler.setFormatter(logging.Formatter("magma_teach: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False  # a root handler configured by the user would print every line twice
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    return logger


# --------------------------------------------------------------------------- threads

THREADS_ENV = "MAGMA_TEACH_THREADS"
_TORCH_DEFAULT_THREADS = torch.get_num_threads()  # before anyone changes it: one per core, or $OMP_NUM_THREADS

# The candidate policies for how many torch threads a run uses (see benchmarks/threads.py for the
# measurements that choose between them):
#   "torch" - torch's own default: one thread per core (or $OMP_NUM_THREADS). Fastest on an idle
#             machine; on a busy one the threads wait for each other at every parallel region.
#   "one"   - a single thread: never oversubscribed, slower on an idle machine.
#   "free"  - the cores not busy when the run starts: cores minus the 1-minute load average,
#             at least 1. Adapts to load, but the thread count (and so possibly the last digits of the
#             results) then depends on what else ran; it is recorded in every results JSON.
THREAD_POLICIES = ("torch", "one", "free")
DEFAULT_THREAD_POLICY = "torch"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def thread_policy(threads: int | str | None = None) -> int:
    """The number of torch threads a run should use.

    ``threads``: a positive integer (used as is) or one of :data:`THREAD_POLICIES`; ``None`` reads
    ``$MAGMA_TEACH_THREADS`` (an integer or a policy name), else :data:`DEFAULT_THREAD_POLICY`.
    A bad value is a ``ValueError`` naming where it came from.
    """
    source = "threads"
    if threads is None and os.environ.get(THREADS_ENV, "").strip():
        threads, source = os.environ[THREADS_ENV].strip(), f"${THREADS_ENV}"
    if threads is None:
        threads = DEFAULT_THREAD_POLICY
    if isinstance(threads, str) and threads.isdigit():
        threads = int(threads)
    if isinstance(threads, str):
        if threads not in THREAD_POLICIES:
            raise ValueError(f"{source} must be a positive integer or one of {', '.join(THREAD_POLICIES)}, "
                             f"got {threads!r}")
        if threads == "torch":
            return _TORCH_DEFAULT_THREADS
        if threads == "one":
            return 1
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        return max(1, min(_cores(), round(_cores() - load)))
    check_positive(source, threads, integer=True)
    return int(threads)


WORKERS_ENV = "MAGMA_TEACH_WORKERS"


def worker_count(jobs: int, device: torch.device | str = "cpu", threads: int | None = None) -> int:
    """How many processes train in parallel: as many as the cores hold at ``threads`` torch threads each
    (default: the current count), at most ``jobs``; one on a GPU (one device, one process) or when
    ``$MAGMA_TEACH_WORKERS`` says so. Results do not depend on it: every training job is seeded on its own.
    """
    if os.environ.get(WORKERS_ENV, "").strip():
        value = os.environ[WORKERS_ENV].strip()
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"${WORKERS_ENV} must be a positive integer, got {value!r}")
        return max(1, min(jobs, int(value)))
    if torch.device(device).type != "cpu":
        return 1
    return max(1, min(jobs, _cores() // max(1, threads or torch.get_num_threads())))


@contextmanager
def use_threads(n: int):
    """Run the ``with`` block with ``n`` torch intra-op threads; the previous count is restored after."""
    check_positive("threads", n, integer=True)
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield n
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- output locations

def check_writable_dir(name: str, path) -> None:
    """``ValueError`` naming ``name`` unless ``path`` is a folder this process can write into, or can be
    created as one (its nearest existing ancestor is a writable folder). Nothing is created.

    The check writes and removes an unnamed temporary file, so it also holds for root, read-only
    mounts and ACLs, where permission bits alone would mislead.
    """
    import tempfile
    from pathlib import Path

    path = Path(path).expanduser()
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            raise ValueError(f"{name} {str(path)!r} goes through a dangling link at {str(probe)!r}")
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == path else f"lies under {str(probe)!r}, which is a file"
        raise ValueError(f"{name} must be a folder, but {str(path)!r} {where}; choose a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        what = "" if probe == path else f" (it would be created in {str(probe)!r})"
        raise ValueError(f"{name} {str(path)!r} is not writable{what}: {err.strerror or err}; "
                         f"choose a folder you can write to") from None
