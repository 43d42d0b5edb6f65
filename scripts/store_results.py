"""Measure the results the book's chapters read, and keep them in the package (``magma_teach/stored/``).

    python scripts/store_results.py                     # every run of STORED_RUNS, from an empty cache
    python scripts/store_results.py ablation            # one of them
    python scripts/store_results.py --check             # measure again and compare with what is stored

Each run is ``run(<experiment>, preset="quick", seed=0)``, what a chapter runs at its default
parameters, in the order of :data:`~magma_teach.experiments.stored.STORED_RUNS` and with one cache
folder for all of them (a new empty one unless ``--cache`` names one), as in one pass of the book. A
stored result is stamped with the code fingerprint and library versions that measured it, and
``run(..., stored=True)`` returns it only while those still match (see
:mod:`magma_teach.experiments.stored`). With ``--check`` nothing is written: each run is compared
with its stored result (every row and extra frame, to 1e-9) and the exit status is 1 if any differs.
Takes about 45 minutes on 2 cores; it prints each run's time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import pandas as pd

from magma_teach.experiments import run
from magma_teach.experiments.results import ExperimentResult
from magma_teach.experiments.stored import STORED_RUNS, path_of, store


def same(measured: ExperimentResult, kept: ExperimentResult) -> bool:
    """Whether two results hold the same rows and extra frames (numbers to 1e-9)."""
    if set(measured.extras) != set(kept.extras):
        return False
    frames = [(measured.rows, kept.rows)] + [(measured.extras[k], v) for k, v in kept.extras.items()]
    try:
        for a, b in frames:
            pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False,
                                          rtol=1e-9, atol=1e-9)
    except AssertionError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                        help=f"which runs (default: all of {', '.join(STORED_RUNS)})")
    parser.add_argument("--check", action="store_true", help="measure again and compare; write nothing")
    parser.add_argument("--cache", default=None, help="cache folder (default: a new empty one)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.experiments) - set(STORED_RUNS))
    if unknown:
        parser.error(f"not a stored run: {', '.join(unknown)} (choose from {', '.join(STORED_RUNS)})")
    names = [n for n in STORED_RUNS if not args.experiments or n in args.experiments]
    differ = []
    with tempfile.TemporaryDirectory(prefix="magma-store-") as scratch:
        for name in names:
            start = time.perf_counter()
            result = run(name, preset="quick", seed=0, device="cpu", cache_dir=args.cache or scratch)
            if args.check:
                path = path_of(name, "quick", "offline", 0)
                verdict = "same" if path.is_file() and same(result, ExperimentResult.read(path)) else "DIFFERS"
                differ += [name] if verdict == "DIFFERS" else []
            else:
                verdict = f"stored in {path_of(name, 'quick', 'offline', 0).name}"
                store(result)
            print(f"{name:24s} {time.perf_counter() - start:7.1f} s  {verdict}", file=sys.stderr, flush=True)
    if differ:
        print(f"differ from what is stored: {', '.join(differ)}", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
