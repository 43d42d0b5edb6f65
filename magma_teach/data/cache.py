"""A disk cache for generated benchmarks: build once, reload in about a second.

Where: the ``cache_dir`` argument, else the ``MAGMA_TEACH_CACHE`` environment variable, else
``~/.cache/magma_teach``. What: one file per (benchmark name, generation config), named
``<name>-<12 hex digits>.pt`` where the digits start the SHA-256 of the config written as JSON with
sorted keys — change any setting (seed, preset, SNR, …) and a new file is built beside the old one.

Safety, in the order things can go wrong:

* a crash while saving never leaves a half-written file under the final name: the payload is written
  to a temporary file in the same folder, then renamed over the target (``os.replace`` is atomic);
* loading uses ``torch.load(..., weights_only=True)``, which refuses to run code hidden in a pickle,
  so a payload may hold only tensors, lists, dicts, strings, numbers, booleans and ``None``;
* a truncated or garbage file gives one warning (``cache file … is corrupt (…); regenerating``) and
  is rebuilt, instead of an obscure unpickling error.

:func:`dataset_to_payload` / :func:`dataset_from_payload` turn a
:class:`~magma_teach.data.base.CrossModalDataset` into such a plain payload and back.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch

from magma_teach.data.base import CrossModalDataset, Modality

ENV_VAR = "MAGMA_TEACH_CACHE"


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


def save_payload(payload, path: str | os.PathLike) -> None:
    """Write ``payload`` with ``torch.save`` to a temporary file beside ``path``, then rename it (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_payload(path: str | os.PathLike):
    """``torch.load`` with ``weights_only=True``; raises whatever torch raises on a bad file."""
    return torch.load(path, map_location="cpu", weights_only=True)


def cached(name: str, config: dict, build_fn: Callable[[], dict],
           cache_dir: str | os.PathLike | None = None, validate: Callable[[dict], object] | None = None) -> dict:
    """Return the payload for ``(name, config)``: from the cache if a good file is there, else built.

    ``build_fn()`` must return a dict of plain values (see the module docstring); it is called only
    when the file is missing or corrupt, and its result is saved before being returned. ``validate``,
    if given, is called on a loaded payload; if it raises, the file counts as corrupt too (a file
    that unpickles fine but lacks a field is as useless as a truncated one).
    """
    path = cache_path(name, config, cache_dir)
    if path.exists():
        try:
            payload = load_payload(path)
            if not isinstance(payload, dict):
                raise TypeError(f"expected a dict, found {type(payload).__name__}")
            if validate is not None:
                validate(payload)
            return payload
        except Exception as err:  # noqa: BLE001 - any failure to read means: rebuild it
            reason = f"{type(err).__name__}: {err}".splitlines()[0][:160]
            warnings.warn(f"cache file {display_path(path)} is corrupt ({reason}); regenerating", stacklevel=2)
    payload = build_fn()
    save_payload(payload, path)
    return payload


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
