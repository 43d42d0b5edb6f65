"""What a runner returns (:class:`ExperimentResult`), how it is written to disk, and the paper's table layout."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from magma_teach.baselines import GROUPS


@dataclass
class ExperimentResult:
    """What a runner returns: the main tidy ``rows`` plus named extra frames, and run metadata."""

    experiment: str
    preset: str
    data: str
    device: str
    seconds: float
    rows: pd.DataFrame
    extras: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"experiment": self.experiment, "preset": self.preset, "data": self.data, "device": self.device,
                "torch": torch.__version__, "seconds": round(self.seconds, 1),
                "rows": _records(self.rows), **{k: _records(v) for k, v in self.extras.items()}}

    def write(self, out_dir) -> Path:
        """Write ``<experiment>.json`` (everything) and ``<experiment>.csv`` (the rows); return the JSON path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.experiment}.json"
        path.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False))
        self.rows.to_csv(out / f"{self.experiment}.csv", index=False)
        return path

    @classmethod
    def read(cls, path) -> "ExperimentResult":
        """Load a result written by :meth:`write`."""
        blob = json.loads(Path(path).read_text())
        core = ("experiment", "preset", "data", "device", "torch", "seconds", "rows")
        extras = {k: pd.DataFrame(v) for k, v in blob.items() if k not in core}
        return cls(blob["experiment"], blob["preset"], blob["data"], blob["device"], blob["seconds"],
                   pd.DataFrame(blob["rows"]), extras)


def _records(frame) -> list:
    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    return json.loads(frame.to_json(orient="records", force_ascii=False))


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
