"""Small helpers every module needs: seeding, device choice, argument checks and progress bars.

The checks raise ``ValueError`` messages that name the field and its allowed range, so a reader who
passes ``k_shot=50`` to a task with 20 samples per class learns what to change, not where it crashed.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


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


def check_positive(name: str, value, integer: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` > 0 (and an integer when asked)."""
    if integer and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not value > 0:
        kind = "a positive integer (>= 1)" if integer else "positive (> 0)"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def check_range(name: str, value, low, high) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``low <= value <= high``."""
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


def progress(iterable, desc: str, total: int | None = None, show: bool = True):
    """A tqdm progress bar over ``iterable`` on stderr, shown only when ``show`` is true and a person is
    watching: silent under CI (``$CI`` set) or when stderr is not a terminal."""
    import sys

    from tqdm.auto import tqdm

    quiet = not show or bool(os.environ.get("CI")) or not sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, disable=quiet, leave=False)

