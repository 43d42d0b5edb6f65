"""How long each chapter of the book takes to execute, from a cold cache, the way CI's nbval does.

    python benchmarks/book_time.py                      # every chapter, into a temp folder, fresh cache
    python benchmarks/book_time.py --in-place           # the same, writing the executed chapters back
    python benchmarks/book_time.py --cache ~/.cache/magma_teach book/05_image_audio   # warm cache, one chapter
    python benchmarks/book_time.py --train              # STORED = False: train what the chapters would load

Each chapter runs in a fresh kernel through ``scripts/run_notebook.py`` with ``CI=1`` (progress off),
in book order, so a later chapter may load models an earlier one trained, as in one pass of ``pytest``
over the book. The chapters read the results stored in the package while the installed code is
the code that measured them (``STORED = True``, :mod:`magma_teach.experiments.stored`), as CI's nbval
does; ``--train`` sets ``STORED = False`` in every chapter, which times the book's training. By default the cache (data and trained models) is a new empty folder: the first chapter
that needs a benchmark generates it, and every model is trained once. It prints one line per chapter
(seconds, ok or the failing cell), the total, the machine's load average before and after, and writes the
table as JSON with ``--json``. A failing chapter does not stop the run. Timings on a shared machine are
upper bounds: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from run_notebook import NotebookFailed, execute  # noqa: E402
from sync_notebooks import chapter_notebooks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapters as in _toc.yml (default: every notebook chapter)")
    parser.add_argument("--in-place", action="store_true", help="write the executed chapters back into book/")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: a new empty one)")
    parser.add_argument("--json", type=Path, default=None, help="write the table here as JSON")
    parser.add_argument("--train", action="store_true", help="STORED = False: train instead of reading stored results")
    args = parser.parse_args(argv)
    if args.train and args.in_place:
        parser.error("--train writes chapters with a changed parameter: not with --in-place")
    wanted = {c.removesuffix(".ipynb") for c in args.chapters}
    chapters = [p for p in chapter_notebooks() if not wanted or str(p.relative_to(ROOT).with_suffix("")) in wanted]
    if not chapters:
        parser.error(f"no notebook chapter of _toc.yml matches {', '.join(sorted(wanted))}")
    os.environ["CI"] = "1"
    os.environ["MAGMA_TEACH_CACHE"] = str(args.cache or tempfile.mkdtemp(prefix="book_time_cache_"))
    out = None if args.in_place else Path(tempfile.mkdtemp(prefix="book_time_"))
    rows, load_before = [], os.getloadavg()[0]
    for path in chapters:
        start = time.perf_counter()
        try:
            execute(path, path if out is None else out / path.name, {"STORED": False} if args.train else None)
            outcome = "ok"
        except NotebookFailed as failure:
            outcome = str(failure).split(": ", 1)[1]
        seconds = time.perf_counter() - start
        rows.append({"chapter": path.stem, "seconds": round(seconds, 1), "outcome": outcome})
        print(f"{path.stem:36s} {seconds:7.1f} s  {outcome}", flush=True)
    total = sum(r["seconds"] for r in rows)
    print(f"{'total':36s} {total:7.1f} s  ({total / 60:.1f} min); load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; cache {os.environ['MAGMA_TEACH_CACHE']}")
    if args.json:
        args.json.write_text(json.dumps({"chapters": rows, "total_seconds": round(total, 1), "cpus": os.cpu_count(),
                                         "load_before": load_before, "load_after": os.getloadavg()[0]}, indent=1))
    return int(any(r["outcome"] != "ok" for r in rows))


if __name__ == "__main__":
    sys.exit(main())
