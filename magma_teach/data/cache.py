"""A disk cache for generated benchmarks: build once, reload in about a second.

Where: the ``cache_dir`` argument, else the ``MAGMA_TEACH_CACHE`` environment variable, else
``~/.cache/magma_teach``. What: one file per (benchmark name, generation config), named
``<name>-<12 hex digits>.pt`` where the digits start the SHA-256 of the config written as JSON with
sorted keys — change any setting (seed, preset, SNR, …) and a new file is built beside the old one.

Safety, in the order things can go wrong:

* **what is saved can be loaded.** Loading uses ``torch.load(..., weights_only=True)``, which refuses
  to run code hidden in a pickle, so it reads back only tensors, numbers, strings, bytes, booleans,
  ``None`` and lists, tuples, sets and dicts of them. :func:`to_plain` checks a payload *before* it is
  saved: numpy scalars become Python numbers, numpy arrays become tensors (string or object arrays
  become lists), paths become strings, dict / list subclasses become dicts / lists, frozensets become
  sets; anything else (a dataclass, a datetime, a namedtuple, …) is refused with a one-line
  ``ValueError`` that names where it sits, e.g. ``payload['info']['when']``. A file is therefore never
  written that would fail every later load (and be rebuilt on every call);
* **a crash while saving never leaves a half-written file** under the final name: the payload is
  written to a temporary file ``.<name>.pt.<random>.tmp`` in the same folder, then renamed over the
  target (``os.replace`` is atomic). Temporary files of a process that was killed are removed by the
  next save of the same file;
* **two processes building the same file** (two runs started at once) do not both build it: the
  builder holds the lock file ``<cache>/.locks/<name>.pt.lock`` (:func:`cache_lock`, an OS ``flock``
  through ``filelock``), the other one says on stderr that it waits, then loads the finished file.
  Loading a good file takes no lock (a read-only shared cache works). The operating system releases the lock when its holder dies, even by ``SIGKILL``, so a killed
  run never blocks the next one. The (empty) lock files stay: deleting a lock file while another
  process waits on it would let two processes hold "the" lock at once;
* **a truncated or garbage file** gives one line on stderr, ``magma_teach: cache file <path> is corrupt
  (<reason>); rebuilding it``, and is rebuilt, instead of an obscure unpickling error.

Messages go through the ``logging`` logger ``magma_teach`` (records from ``magma_teach.cache``), which
writes ``magma_teach: <message>`` lines to stderr; ``logging.getLogger("magma_teach").setLevel(...)``
silences or widens it.

:func:`dataset_to_payload` / :func:`dataset_from_payload` turn a
:class:`~magma_teach.data.base.CrossModalDataset` into such a plain payload and back.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import logging
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Callable

import numpy as np
import torch
from filelock import FileLock, Timeout

from magma_teach.data.base import CrossModalDataset, Modality
from magma_teach.utils import package_logger

ENV_VAR = "MAGMA_TEACH_CACHE"
LOCK_FOLDER = ".locks"
REASON_WIDTH = 120  # characters of an error message quoted in the corrupt-file line


package_logger()  # lines as 'magma_teach: …' on stderr
log = logging.getLogger("magma_teach.cache")


def one_line(text: str, width: int = REASON_WIDTH) -> str:
    """``text`` on one line (whitespace runs become one space), cut at a word boundary to at most
    ``width`` characters plus `` …``. A first word longer than ``width`` is kept whole."""
    kept = ""
    for word in text.split():
        longer = f"{kept} {word}" if kept else word
        if kept and len(longer) > width:
            return f"{kept} …"
        kept = longer
    return kept


# --- where ------------------------------------------------------------------------------------------

def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$MAGMA_TEACH_CACHE``, else ``~/.cache/magma_teach``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "magma_teach"


def cache_key(name: str, config: dict) -> str:
    """``<name>-<first 12 hex digits of sha256(json(config, sorted keys))>``."""
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    except TypeError as err:
        raise ValueError(f"config must be JSON-serializable (numbers, strings, lists, dicts): {err}") from None
    return f"{name}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def cache_path(name: str, config: dict, cache_dir: str | os.PathLike | None = None) -> Path:
    """The file that holds (or will hold) the payload of ``name`` built with ``config``."""
    return cache_root(cache_dir) / f"{cache_key(name, config)}.pt"


def display_path(path: str | os.PathLike) -> str:
    """``path`` written as ``~/...`` when it lies under the home folder (shorter, and no user name)."""
    path = Path(path).expanduser().absolute()
    try:
        return str(Path("~") / path.relative_to(Path.home()))
    except ValueError:
        return str(path)


# --- locking ----------------------------------------------------------------------------------------

_LOCKS: dict[str, FileLock] = {}
_LOCKS_GUARD = threading.Lock()


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file that guards ``target``: ``<target's folder>/.locks/<target's name>.lock``."""
    target = Path(target)
    return target.parent / LOCK_FOLDER / f"{target.name}.lock"


@contextmanager
def cache_lock(target: str | os.PathLike):
    """Hold the lock of ``target`` (a cache file or a download folder) for the ``with`` block.

    Exclusive between processes and between threads; re-entrant in one thread (one ``FileLock``
    object per lock file, whose hold count is per thread). If another process holds it, one line
    says so on stderr, then this waits as long as that process lives: ``flock`` locks die with their
    process, so a run killed halfway never blocks the next.
    """
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(str(path.absolute()))
        if lock is None:
            lock = _LOCKS[str(path.absolute())] = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info(f"waiting for another process that is writing {display_path(target)}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


# --- what may be saved ------------------------------------------------------------------------------

# Exact types torch.load(weights_only=True) reads back as they are (torch.Size before tuple).
_LEAVES = frozenset({type(None), bool, int, float, complex, str, bytes, bytearray,
                     torch.dtype, torch.device, torch.layout, torch.Size, torch.Tensor, torch.nn.Parameter})
ALLOWED = "tensors, numbers, str, bytes, bool, None, or lists, tuples, sets and dicts of them"


def to_plain(payload, where: str = "payload"):
    """``payload`` with every value made loadable by ``torch.load(weights_only=True)``.

    Converted: numpy scalars → Python ``bool`` / ``int`` / ``float`` / ``complex`` / ``str``; numpy
    arrays → tensors (arrays of strings or objects → lists, then checked again); ``pathlib`` paths →
    ``str``; tensor subclasses → plain tensors; dict, list and set subclasses (``OrderedDict``,
    ``defaultdict``, …) → ``dict`` / ``list`` / ``set``; ``frozenset`` → ``set``. Tensors are not
    copied. Raises a one-line ``ValueError`` naming the value's place (``payload['info']['when']``;
    ``{key}`` and ``{element}`` mark a dict key and a set element) for anything else, for a tuple
    subclass (a namedtuple would come back without its field names: store ``._asdict()``), for a
    container that contains itself, and for two dict keys that become equal once converted.
    """
    return _plain(payload, where, {}, set())


def _plain(value, where: str, memo: dict, active: set):
    kind = type(value)
    if kind in _LEAVES:
        return value
    if isinstance(value, torch.Tensor):
        return value.as_subclass(torch.Tensor)
    if isinstance(value, np.generic):
        item = value.item()  # np.longdouble stays numpy, np.datetime64 becomes a datetime: refused
        if not (type(item) in _LEAVES or isinstance(item, tuple)):  # a tuple: a structured record
            _refuse(value, where)
        return _plain(item, where, memo, active)
    if isinstance(value, PurePath):
        return str(value)
    if not isinstance(value, (dict, list, tuple, set, frozenset, np.ndarray)):
        _refuse(value, where)
    if isinstance(value, tuple) and kind is not tuple:
        _refuse(value, where, hint="a tuple subclass loses its type; store a tuple, or a dict via ._asdict()")
    if id(value) in active:
        raise ValueError(f"cannot cache {where}: it contains itself; a cached payload must be a tree")
    if id(value) not in memo:  # a container met twice is converted once and stays shared
        active.add(id(value))
        try:
            # memo keeps ``value`` alive too, so no temporary (a .tolist()) frees its id for reuse
            memo[id(value)] = (value, _container(value, where, memo, active))
        finally:
            active.discard(id(value))
    return memo[id(value)][1]


def _container(value, where: str, memo: dict, active: set):
    if isinstance(value, np.ndarray):
        try:
            return torch.from_numpy(value.copy(order="C"))  # a copy: the caller's array stays its own
        except TypeError:  # strings, objects, datetimes: torch has no such dtype
            return _plain(value.tolist(), where, memo, active)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            new_key = _hashable(_plain(key, f"{where}{{key}}", memo, active), key, f"{where}{{key}}")
            if new_key in out:
                raise ValueError(f"cannot cache {where}: keys {key!r} and {new_key!r} become equal once converted")
            out[new_key] = _plain(item, f"{where}[{new_key!r}]", memo, active)
        return out
    if isinstance(value, (set, frozenset)):
        return {_hashable(_plain(item, f"{where}{{element}}", memo, active), item, f"{where}{{element}}")
                for item in value}
    items = [_plain(item, f"{where}[{i}]", memo, active) for i, item in enumerate(value)]
    return tuple(items) if isinstance(value, tuple) else items


def _hashable(converted, original, where: str):
    """``converted`` if it can be a dict key or set element (a frozenset, once a set, cannot)."""
    try:
        hash(converted)
    except TypeError:
        _refuse(original, where, hint="a dict key or set element must stay hashable once converted: "
                                      "use str, numbers, or tuples of them")
    return converted


def _refuse(value, where: str, hint: str | None = None) -> None:
    kind = type(value)
    shown = one_line(repr(value), 40)
    raise ValueError(f"cannot cache {where} = {shown}: a {kind.__module__}.{kind.__qualname__} cannot be read "
                     f"back by torch.load(weights_only=True); {hint or 'store ' + ALLOWED}")


# --- saving and loading -----------------------------------------------------------------------------

def follow_umask(path: str | os.PathLike, directory: bool = False) -> None:
    """Give ``path`` the permissions a plain ``open`` or ``mkdir`` would: 0o666 (a folder: 0o777) less the umask.

    ``tempfile`` makes files and folders that only their owner may read (0o600 / 0o700), right for a
    secret but not for a cache, a download or a result that a group, a second account or a web server
    should read as it reads everything else the user writes. Called on every temporary file or folder
    that is renamed into place.
    """
    mask = os.umask(0)  # the only portable way to read the umask is to set it and put it back
    os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)


def save_payload(payload, path: str | os.PathLike):
    """Write :func:`to_plain` of ``payload`` to ``path`` atomically and return that plain payload.

    The bytes go to a temporary file beside ``path``, which is renamed over it only when complete.
    Done under :func:`cache_lock` of ``path``, so any temporary file of ``path`` found then is a
    leftover of a killed process and is removed. Raises ``ValueError`` (see :func:`to_plain`) before
    anything is written.
    """
    payload = to_plain(payload)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with cache_lock(path):
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            follow_umask(tmp)
            with os.fdopen(fd, "wb") as handle:
                torch.save(payload, handle)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return payload


def load_payload(path: str | os.PathLike):
    """``torch.load`` with ``weights_only=True``; raises whatever torch raises on a bad file."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _try_load(path: Path, validate: Callable[[dict], object] | None) -> tuple[dict | None, str | None]:
    """``(payload, None)`` for a good file, ``(None, None)`` for none, ``(None, reason)`` for a bad one."""
    if not path.exists():
        return None, None
    try:
        if path.stat().st_size == 0:  # torch says only "EOFError" then
            raise EOFError("the file is empty")
        payload = load_payload(path)
        if not isinstance(payload, dict):
            raise TypeError(f"expected a dict, found {type(payload).__name__}")
        if validate is not None:
            validate(payload)
        return payload, None
    except Exception as err:  # noqa: BLE001 - any failure to read means: rebuild it
        return None, one_line(f"{type(err).__name__}: {err}" if str(err).strip() else type(err).__name__)


def cached(name: str, config: dict, build_fn: Callable[[], dict],
           cache_dir: str | os.PathLike | None = None, validate: Callable[[dict], object] | None = None) -> dict:
    """Return the payload for ``(name, config)``: from the cache if a good file is there, else built.

    ``build_fn()`` must return a dict; it is called only when the file is missing or corrupt, and its
    result, made plain by :func:`to_plain`, is checked, saved and returned (so the first call returns
    what later calls load). ``validate``, if given, is called on a loaded payload; if it raises, the
    file counts as corrupt too (a file that unpickles fine but lacks a field is as useless as a
    truncated one). It is called on a freshly built payload too, before saving, and an error there
    propagates: a payload that fails its own check is never cached.

    Building happens under :func:`cache_lock`, so a second process asking for the same file at the
    same time waits and then loads it. Raises ``ValueError`` when ``build_fn`` returns something
    that is not a dict or cannot be cached (see :func:`to_plain`).
    """
    path = cache_path(name, config, cache_dir)
    payload, _ = _try_load(path, validate)
    if payload is not None:  # the common case needs no lock: files appear only by atomic rename
        return payload
    with cache_lock(path):
        payload, problem = _try_load(path, validate)  # another process may have built it meanwhile
        if payload is not None:
            return payload
        if problem is not None:
            log.warning(f"cache file {display_path(path)} is corrupt ({problem}); rebuilding it")
        payload = build_fn()
        if not isinstance(payload, dict):
            raise ValueError(f"build_fn of {name!r} must return a dict, got {type(payload).__name__}")
        payload = to_plain(payload)
        if validate is not None:
            validate(payload)
        return save_payload(payload, path)


# --- trained results: kept only where training is deterministic -------------------------------------

MODEL_CACHE_ENV = "MAGMA_TEACH_MODEL_CACHE"


def models_cached(device) -> bool:
    """Whether trained weights (models, pre-trained encoders) go through the disk cache: on a CPU, where
    training with a given key is deterministic, unless ``$MAGMA_TEACH_MODEL_CACHE`` is ``0``."""
    return torch.device(device).type == "cpu" and os.environ.get(MODEL_CACHE_ENV, "1").strip() != "0"


# --- fingerprints: keys for results computed from data and code ---------------------------------------

def data_fingerprint(data: CrossModalDataset) -> str:
    """SHA-256 of every tensor, split and task of ``data`` (all that training may read)."""
    digest = hashlib.sha256(repr((data.name, data.splits, data.eval_tasks)).encode())
    for tensor in (data.source.x, data.source.lengths, data.source.labels, data.target.x, data.target.lengths,
                   data.target.labels, data.pairs, data.clusters):
        digest.update(repr((tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def tensors_fingerprint(tensors: dict) -> str:
    """SHA-256 of named tensors (e.g. a state dict), names and bytes in order."""
    digest = hashlib.sha256()
    for name, tensor in tensors.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 of the package's Python sources, and of torch's version and CPU kernels: results computed
    by other code, or rounded by other kernels, never match."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(f"{torch.__version__} {torch.backends.cpu.get_cpu_capability()}".encode())
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# --- datasets as payloads ---------------------------------------------------------------------------

def _modality_to_dict(m: Modality) -> dict:
    return {"kind": m.kind, "x": m.x, "lengths": m.lengths, "labels": m.labels}


def dataset_to_payload(dataset: CrossModalDataset) -> dict:
    """A :class:`CrossModalDataset` as a dict of tensors, lists, strings and numbers (``torch.load``-safe)."""
    return {"name": dataset.name, "class_names": list(dataset.class_names),
            "source": _modality_to_dict(dataset.source), "target": _modality_to_dict(dataset.target),
            "pairs": dataset.pairs, "clusters": dataset.clusters,
            "splits": {k: list(v) for k, v in dataset.splits.items()},
            "eval_tasks": [list(t) for t in dataset.eval_tasks], "info": dataset.info}


def dataset_from_payload(payload: dict) -> CrossModalDataset:
    """Inverse of :func:`dataset_to_payload`."""
    return CrossModalDataset(
        name=payload["name"], class_names=list(payload["class_names"]),
        source=Modality(**payload["source"]), target=Modality(**payload["target"]),
        pairs=payload["pairs"], clusters=payload["clusters"], splits=dict(payload["splits"]),
        eval_tasks=[list(t) for t in payload["eval_tasks"]], info=dict(payload["info"]))
