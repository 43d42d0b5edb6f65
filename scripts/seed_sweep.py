"""Execute chapters with other values of ``SEED`` and report which ones still run and keep their claims.

A reader who sets ``SEED = 1`` in a chapter's parameters cell must get a chapter that runs and whose
asserted claims still hold (issue 10). This script executes every chapter of
``_toc.yml`` (or those named) and every seed asked for, writing the executed copies to a scratch folder,
never over the book's own notebooks::

    python scripts/seed_sweep.py                          # every chapter, SEED = 1 and 2
    python scripts/seed_sweep.py --seeds 1 --out /tmp/sweep book/05_image_audio book/07_retrieval

Each run goes through ``scripts/run_notebook.py`` (papermill injects ``SEED``, nbclient executes). It
prints one row per chapter and seed: ``ok``, or the first failing cell with its error (an
``AssertionError`` there is a claim that did not hold), and the seconds taken; the exit status is 1 when
any run failed. ``SEED`` also draws the benchmark, so every value of it trains its own models (the disk
cache then keeps them for the next sweep): a sweep takes about as long as executing the book once per
seed, and the ablation chapter alone most of an hour on 2 cores. Run it outside CI.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebook import NotebookFailed, execute  # noqa: E402
from sync_notebooks import ROOT, chapter_notebooks  # noqa: E402


def sweep(chapters: list[Path], seeds: list[int], out: Path) -> pd.DataFrame:
    """Execute each chapter with each seed into ``out``; one row per run."""
    rows = []
    for path in chapters:
        for seed in seeds:
            target = out / f"{path.stem}_seed{seed}.ipynb"
            start = time.perf_counter()
            try:
                execute(path, target, {"SEED": seed})
                outcome = "ok"
            except NotebookFailed as failure:
                outcome = str(failure).split(": ", 1)[1]  # "cell N raised Name: message"
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
