"""What a runner returns (:class:`ExperimentResult`), how it is written to disk, and the paper's table layout.

A run writes two files under ``out``, named by :func:`result_stem` so that runs of other experiments,
presets, data, seeds or ``--set`` settings never share a name (``image-audio_quick_offline_seed0``):

* ``<stem>.json`` — everything needed to read and to reproduce the run: the tidy ``rows`` (full
  precision), the extra frames, the seed(s), every preset setting, the data settings and the full
  generation config of each benchmark, and :func:`provenance` (package versions, torch threads,
  device, git commit). The only fields that differ between two runs of the same command on the same
  machine are under ``"timing"`` (:data:`TIME_FIELDS`);
* ``<stem>.csv`` — the rows for a spreadsheet: units in the column names (``accuracy_mean_pct``) and
  values rounded to what their spread supports (:func:`csv_frame`).

Both files appear together or not at all: each is written to a temporary file first and both are
renamed into place with Ctrl-C held back for those two renames. An existing file is never replaced
unless ``force=True``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import platform
import signal
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from magma_teach.baselines import GROUPS
from magma_teach.data.cache import follow_umask

# The keys of the results JSON that change between two runs of one command (the rest is byte-identical
# for the same seed, thread count and machine).
TIME_FIELDS = ("timing",)

# Column of the tidy rows → (CSV column name with its unit, decimals kept in the CSV; None = as is).
# Accuracies are means over tasks of a few dozen queries, with a spread of a point or more between
# draws: a tenth of a point is all the precision they carry.
CSV_COLUMNS = {
    "shots": ("shots_per_class", None),
    "mean": ("accuracy_mean_pct", 1),
    "std": ("accuracy_std_pct", 1),
    "noise": ("label_noise_fraction", 2),
    "K": ("adapt_pairs_per_concept", None),
    "R@1": ("recall_at_1_pct", 1),
    "R@5": ("recall_at_5_pct", 1),
    "R@10": ("recall_at_10_pct", 1),
    "rank": ("median_rank", 1),
    "cos": ("cosine_loss", 3),
    "concept R@1": ("concept_recall_at_1_pct", 1),
}


@dataclass
class ExperimentResult:
    """What a runner returns: the main tidy ``rows`` plus named extra frames, and run metadata.

    ``seconds`` is the wall time of the run; ``seeds`` the training seeds; ``settings`` every field
    of the preset; ``data_settings`` the ``--set`` changes; ``datasets`` the generation config of each
    benchmark loaded; ``provenance`` what :func:`provenance` records; ``finished`` the UTC time;
    ``stored``: empty for a result measured by this call, else what :mod:`~magma_teach.experiments.stored`
    recorded when it kept the result (code fingerprint, library versions, the command that measures it).
    """

    experiment: str
    preset: str
    data: str
    device: str
    seconds: float
    rows: pd.DataFrame
    extras: dict = field(default_factory=dict)
    seed: int = 0
    seeds: list = field(default_factory=lambda: [0])
    settings: dict = field(default_factory=dict)
    data_settings: dict = field(default_factory=dict)
    datasets: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    finished: str = ""
    stored: dict = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """The file name (without extension) this result is written under: see :func:`result_stem`."""
        return result_stem(self.experiment, self.preset, self.data, self.seed, self.data_settings)

    def to_json(self) -> dict:
        """Everything as plain JSON values; time-dependent fields only under ``"timing"``."""
        return {"experiment": self.experiment, "preset": self.preset, "data": self.data, "device": self.device,
                "seed": self.seed, "seeds": list(self.seeds), "preset_settings": _plain(self.settings),
                "data_settings": _plain(self.data_settings), "datasets": _plain(self.datasets),
                "provenance": _plain(self.provenance),
                "csv_columns": {c: CSV_COLUMNS[c][0] for c in self.rows.columns if c in CSV_COLUMNS},
                "rows": _records(self.rows), "extras": {k: _records(v) for k, v in self.extras.items()},
                "timing": {"seconds": round(self.seconds, 1), "finished_utc": self.finished},
                **({"stored": _plain(self.stored)} if self.stored else {})}

    def origin(self) -> str:
        """One line on where the result comes from: measured now, or stored (and by which command)."""
        how = f"{self.seconds / 60:.1f} min on {self.device}"
        if not self.stored:
            return f"measured in {how}"
        return (f"stored: measured in {how} on {self.finished[:10]} by code identical to the installed "
                f"code (`{self.stored['command']}` measures it again)")

    def paths(self, out_dir) -> tuple[Path, Path]:
        """``(<out_dir>/<stem>.json, <out_dir>/<stem>.csv)``."""
        out = Path(out_dir)
        return out / f"{self.stem}.json", out / f"{self.stem}.csv"

    def write(self, out_dir, force: bool = False, csv: bool = True) -> Path:
        """Write ``<stem>.json`` (everything) and ``<stem>.csv`` (the rows, with units; unless ``csv`` is
        false); return the JSON path.

        Raises ``FileExistsError`` if either file exists and ``force`` is false. Both files are
        written to temporary names and renamed into place together, so an interrupted write leaves
        neither a half-written file nor one of the two alone.
        """
        json_path, csv_path = self.paths(out_dir)
        check_free(json_path.parent, self.stem, force)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        texts = {json_path: json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n"}
        if csv:
            texts[csv_path] = csv_frame(self.rows).to_csv(index=False)
        temps = {}
        try:
            for path, text in texts.items():
                fd, temps[path] = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                follow_umask(temps[path])
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                    handle.write(text)
            with _interrupts_held():
                for path, temp in temps.items():
                    os.replace(temp, path)
        finally:
            for temp in temps.values():
                Path(temp).unlink(missing_ok=True)
        return json_path

    @classmethod
    def read(cls, path) -> ExperimentResult:
        """Load a result written by :meth:`write` (also the older layout with extras at the top level)."""
        blob = json.loads(Path(path).read_text(encoding="utf-8"))
        if "extras" in blob:
            extras = blob["extras"]
        else:  # before provenance was recorded: every unknown top-level list was an extra frame
            core = ("experiment", "preset", "data", "device", "torch", "seconds", "rows")
            extras = {k: v for k, v in blob.items() if k not in core}
        timing = blob.get("timing", {"seconds": blob.get("seconds", 0.0)})
        return cls(blob["experiment"], blob["preset"], blob["data"], blob["device"], timing["seconds"],
                   _frame(blob["rows"]), {k: _frame(v) for k, v in extras.items()},
                   seed=blob.get("seed", 0), seeds=blob.get("seeds", [blob.get("seed", 0)]),
                   settings=blob.get("preset_settings", {}), data_settings=blob.get("data_settings", {}),
                   datasets=blob.get("datasets", {}), provenance=blob.get("provenance", {}),
                   finished=timing.get("finished_utc", ""), stored=blob.get("stored", {}))


def result_stem(experiment: str, preset: str, data: str, seed: int, data_settings: dict | None = None) -> str:
    """``<experiment>_<preset>_<data>_seed<seed>``, plus ``_set-<8 hex digits>`` of the ``--set`` settings.

    Two runs share a stem only if they ran the same experiment with the same preset, data, seed and
    settings, i.e. if the second would repeat the first.
    """
    stem = f"{experiment}_{preset}_{data}_seed{seed}"
    if data_settings:
        text = json.dumps(_plain(data_settings), sort_keys=True, separators=(",", ":"))
        stem += f"_set-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"
    return stem


def check_free(out_dir, stem: str, force: bool = False, flag: str = "force=True") -> None:
    """``ValueError`` if ``<out_dir>/<stem>.json`` or ``.csv`` exists and ``force`` is false (``flag``:
    how the caller spells the override, e.g. ``--force``)."""
    if force:
        return
    for suffix in (".json", ".csv"):
        path = Path(out_dir) / f"{stem}{suffix}"
        if path.exists():
            raise ValueError(f"{path} already exists (same experiment, preset, data, seed and settings); "
                             f"add {flag} to replace it, or choose another output folder")


def csv_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows as the CSV holds them: known columns renamed with their unit and rounded (:data:`CSV_COLUMNS`)."""
    frame = rows.copy()
    for column, (_, decimals) in CSV_COLUMNS.items():
        if column in frame and decimals is not None and pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].round(decimals)
    return frame.rename(columns={c: name for c, (name, _) in CSV_COLUMNS.items()})


def provenance(device: str, threads: int | None = None) -> dict:
    """What a result needs to be reproduced besides its settings: versions, threads, device, git state.

    ``{"python", "platform", "packages": {name: version}, "torch_threads", "cpu_count", "device",
    "git": {"commit", "dirty"} or None}``. ``git`` is ``None`` outside a git checkout of this package
    (an installed copy, no git on the machine); it never fails.
    """
    packages = {}
    for name in ("magma_teach", "torch", "torchaudio", "numpy", "pandas", "scikit-learn", "espeakng-loader"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": packages,
            "torch_threads": int(threads if threads is not None else torch.get_num_threads()),
            "cpu_count": os.cpu_count(), "device": device, "git": git_state()}


def git_state(package: str | os.PathLike | None = None) -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout the package folder ``package`` (default:
    this package, as imported) sits at the top of, else ``None``; never raises.

    Read once per process and folder: the code that runs is the code imported, whatever is committed
    later. ``dirty`` counts changes to tracked files only (untracked notebooks or results do not
    change the code). A copy installed in site-packages inside some other repository is not
    mistaken for that repository's checkout.
    """
    return _git_state(Path(package or Path(__file__).resolve().parents[1]).resolve())


@functools.lru_cache(maxsize=8)
def _git_state(package: Path) -> dict | None:

    def git(*args) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top or (Path(top) / package.name).resolve() != package:
        return None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    if commit is None or status is None:
        return None
    return {"commit": commit, "dirty": bool(status)}


def now_utc() -> str:
    """The current UTC time, to the second (ISO 8601)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@contextmanager
def _interrupts_held():
    """Hold Ctrl-C (SIGINT) back for the ``with`` block and deliver it after (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            _deliver(previous, caught[0])


def _deliver(handler, args) -> None:
    """Deliver a held SIGINT as ``handler`` would have: a Python handler is called (Python's own, or
    :func:`magma_teach.interrupt.watch`'s, which also remembers it, raises KeyboardInterrupt); the default
    action becomes KeyboardInterrupt too; an ignored SIGINT stays ignored."""
    if callable(handler):
        handler(*args)
    elif handler != signal.SIG_IGN:
        raise KeyboardInterrupt


def _plain(value):
    """``value`` as JSON-ready plain Python: dataclasses and tuples to dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=str))


def _frame(records) -> pd.DataFrame:
    """A frame from written records; a missing number (NaN, written as null) reads back as NaN, not None."""
    frame = pd.DataFrame(records)
    for column in frame.columns[frame.dtypes == object]:
        values = frame[column].dropna()
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            frame[column] = pd.to_numeric(frame[column]).astype(float)
    return frame


def _records(frame) -> list:
    """A frame as JSON-ready records whose floats read back bit for bit (``json`` writes ``repr``, where
    pandas' ``to_json`` keeps 10 decimals and can move a rounding: 36.25000000000001 became 36.25);
    NaN as ``None`` (null), numpy values as Python ones."""
    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    return [_native(record) for record in frame.to_dict(orient="records")]


def _native(value):
    if isinstance(value, dict):
        return {str(k): _native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_native(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def paper_layout(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of (approach, shots, mean, std, ...) → the paper's table: type | approach | k-shot … | #target (labels)."""
    table = rows.assign(cell=rows["mean"].map("{:.1f}".format) + " ± " + rows["std"].map("{:.1f}".format))
    wide = table.pivot_table(index="approach", columns="shots", values="cell", aggfunc="first", sort=False)
    wide.columns = [f"{k}-shot" for k in wide.columns]
    counts = table.groupby("approach", sort=False).first()
    wide["#target (labels)"] = [f"{int(counts.loc[a, 'target_samples'])} ({int(counts.loc[a, 'target_labels'])})"
                                for a in wide.index]
    wide.insert(0, "type", [GROUPS.get(a, "") for a in wide.index])
    order = {"Uni": 0, "Cross": 1, "Oracle": 2}
    wide = wide.iloc[sorted(range(len(wide)), key=lambda i: order.get(wide["type"].iloc[i], 3))]
    wide = wide.reset_index()
    return wide[["type", "approach", *[c for c in wide.columns if c not in ("type", "approach")]]]
