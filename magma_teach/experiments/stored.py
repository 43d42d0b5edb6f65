"""Results measured once and kept with the package, so that a chapter shows an hour of training in seconds
without ever showing a number that the current code would not measure.

A chapter calls ``run(..., stored=True)``. :func:`find` then looks in :data:`FOLDER` for a result of
the same experiment, preset, data, seed and settings that was

* measured on a CPU (a GPU rounds differently, and a GPU user trains in minutes anyway);
* by code with the same :func:`code_fingerprint` (what the package computes with: its modules'
  syntax trees, docstrings and comments left out, and its data files such as ``tuned.json``);
* with the same Python and the same versions of the libraries that shape the numbers
  (:func:`environment`).

If there is one, :func:`~magma_teach.experiments.run` returns it, with :attr:`ExperimentResult.stored`
saying where it came from; otherwise it trains as always. Change any of the above and the result is
no longer used, so a stale number cannot reach the book: the chapter trains instead.

Torch's CPU kernels are not part of the match. Where torch picks other ones (AVX-512, or
``ATEN_CPU_CAPABILITY=default``) the same code rounds differently, and retraining there moves the
numbers within their training-seed spread (a training seed can land elsewhere); a stored result is
what this code measured on the machine its ``provenance`` names. That is also what makes the book's
stored outputs the same on every machine.

The results are measured again, in one go and from an empty cache, by::

    python scripts/store_results.py             # every result of STORED_RUNS (about 45 min on 2 cores)
    python scripts/store_results.py --check     # measure again and compare with what is stored

``tests/test_stored.py`` fails as soon as the code no longer matches a stored result.
"""

from __future__ import annotations

import ast
import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path

from magma_teach.experiments.results import ExperimentResult, result_stem

FOLDER = Path(__file__).resolve().parents[1] / "stored"
PACKAGE = FOLDER.parent
COMMAND = "python scripts/store_results.py"

# The runs the book's chapters make at their default parameters (quick preset, offline data, seed 0),
# in the order the script measures them: the ablation first, so that its time is that of a new user's
# empty cache; later runs load the models earlier ones trained, as one pass of the book does.
STORED_RUNS = ("ablation", "image-audio", "tuning-check", "retrieval", "noisy-labels", "text-speech",
               "tuning-check-languages", "text-speech-splits", "tradeoff")

# Modules that only present, store or start runs: they cannot change a measured number, so editing
# them leaves the stored results valid.
PRESENTATION = ("viz", "widgets.py", "report.py", "cli.py", "__main__.py", "interrupt.py",
                "experiments/stored.py")

# The libraries whose version can change a number (kernels, synthesis, splits, sampling).
LIBRARIES = ("torch", "torchaudio", "numpy", "scikit-learn", "espeakng-loader")


def code_fingerprint(package: Path = PACKAGE) -> str:
    """SHA-256 over what the package computes with: each module's syntax tree without docstrings (so a
    comment or a reworded docstring changes nothing) and each data file as bytes; :data:`PRESENTATION` left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and not _skipped(p.relative_to(package))):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(_meaning(path.read_text(encoding="utf-8")).encode() if path.suffix == ".py"
                      else path.read_bytes())
    return digest.hexdigest()


def _skipped(relative: Path) -> bool:
    parts = relative.as_posix()
    return (relative.parts[0] == FOLDER.name or "__pycache__" in relative.parts or relative.suffix == ".pyc"
            or any(parts == p or parts.startswith(p + "/") for p in PRESENTATION))


def _meaning(source: str) -> str:
    """A module's syntax tree as text, without docstrings (comments never reach the tree)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def environment() -> dict:
    """Python's minor version (its syntax trees read the same across bug-fix releases) and the versions
    of :data:`LIBRARIES` (``None`` where one is missing)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": ".".join(platform.python_version_tuple()[:2]), **versions}


def path_of(experiment: str, preset: str, data: str, seed: int, data_settings: dict | None = None) -> Path:
    """Where the stored result of that run lives (whether or not it exists)."""
    return FOLDER / f"{result_stem(experiment, preset, data, seed, data_settings)}.json"


def find(experiment: str, preset: str, data: str, seed: int, data_settings: dict | None, device: str) -> \
        ExperimentResult | None:
    """The stored result of this run if the current code and libraries would measure it on ``device``
    (a torch device type), else ``None``."""
    path = path_of(experiment, preset, data, seed, data_settings)
    if device != "cpu" or not path.is_file():
        return None
    result = ExperimentResult.read(path)
    current = {"code": code_fingerprint(), "environment": environment()}
    if {k: result.stored.get(k) for k in current} != current:
        return None
    return result


def store(result: ExperimentResult) -> Path:
    """Write ``result`` into :data:`FOLDER`, stamped with the fingerprint and versions it was measured by."""
    if result.device != "cpu":
        raise ValueError(f"only CPU results are stored, got one measured on {result.device}")
    result.stored = {"code": code_fingerprint(), "environment": environment(), "command": COMMAND}
    path = path_of(result.experiment, result.preset, result.data, result.seed, result.data_settings)
    result.write(path.parent, force=True, csv=False)
    return path


def stale() -> list[str]:
    """The stored results that the current code (fingerprint only) would no longer use, by file name."""
    code = code_fingerprint()
    return sorted(p.name for p in FOLDER.glob("*.json")
                  if json.loads(p.read_text(encoding="utf-8")).get("stored", {}).get("code") != code)
