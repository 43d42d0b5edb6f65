"""Execute chapters with other values of ``SEED`` and report which ones still run and keep their claims.

A reader who sets ``SEED = 1`` in a chapter's parameters cell must get a chapter that runs and whose
asserted claims still hold (issue 10). This script does that with papermill for every chapter of
``_toc.yml`` (or those named) and every seed asked for, writing the executed copies to a scratch folder,
never over the book's own notebooks::

    python scripts/seed_sweep.py                          # every chapter, SEED = 1 and 2
    python scripts/seed_sweep.py --seeds 1 --out /tmp/sweep book/05_image_audio book/07_retrieval

It prints one row per chapter and seed: ``ok``, or the first failing cell with its error (an
``AssertionError`` there is a claim that did not hold), and the seconds taken; the exit status is 1 when
any run failed. Trained models go through the package's disk cache, so a chapter that trains with seeds
``SEED, SEED + 1, …`` reuses the models of an earlier run for the seeds they share. It takes about as
long as executing the book once or twice (quick preset): run it outside CI.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import papermill

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync_notebooks import ROOT, chapter_notebooks  # noqa: E402


def first_error(executed: Path) -> str:
    """``"cell N: Name: message"`` of the first cell of ``executed`` whose output is an error."""
    import nbformat

    for index, cell in enumerate(nbformat.read(executed, as_version=4).cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"cell {index}: {output['ename']}: {output['evalue'][:120]}"
    return "failed before any cell ran"


def sweep(chapters: list[Path], seeds: list[int], out: Path) -> pd.DataFrame:
    """Execute each chapter with each seed into ``out``; one row per run."""
    rows = []
    for path in chapters:
        for seed in seeds:
            target = out / f"{path.stem}_seed{seed}.ipynb"
            start = time.perf_counter()
            try:
                papermill.execute_notebook(str(path), str(target), parameters={"SEED": seed},
                                           cwd=str(path.parent), progress_bar=False)
                outcome = "ok"
            except papermill.PapermillExecutionError:
                outcome = first_error(target)
            seconds = time.perf_counter() - start
            rows.append({"chapter": path.stem, "SEED": seed, "outcome": outcome, "seconds": round(seconds)})
            print(f"{path.stem:36s} SEED={seed}  {outcome}  ({seconds:.0f} s)", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapters as in _toc.yml (default: every notebook chapter)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2], help="values of SEED (default: 1 2)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the executed copies (default: a new temp folder)")
    args = parser.parse_args(argv)
    listed = chapter_notebooks()
    wanted = {c.removesuffix(".ipynb") for c in args.chapters}
    chapters = [p for p in listed if not wanted or str(p.relative_to(ROOT).with_suffix("")) in wanted]
    unknown = wanted - {str(p.relative_to(ROOT).with_suffix("")) for p in listed}
    if unknown:
        parser.error(f"not a notebook chapter of _toc.yml: {', '.join(sorted(unknown))}")
    out = args.out or Path(tempfile.mkdtemp(prefix="seed_sweep_"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CI", "1")  # progress bars off, as in scripts/execute_book.sh
    table = sweep(chapters, args.seeds, out)
    print(table.to_string(index=False))
    print(f"executed copies in {out}")
    return int((table["outcome"] != "ok").any())


if __name__ == "__main__":
    sys.exit(main())
