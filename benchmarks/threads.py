"""How the main job holds up under load: one experiment, idle and beside other CPU-bound processes, with
each torch thread count or policy asked for.

    python benchmarks/threads.py                          # quick image-audio; 1 and 2 threads; idle and 1 hog
    python benchmarks/threads.py --preset tiny            # a smoke test of the script (minutes)
    python benchmarks/threads.py --threads 1 2 free --hogs 1 2

Every run is ``python -m magma_teach run EXPERIMENT --preset P --threads T`` in a child process, on a
cache warmed beforehand (data generation is not timed). "Loaded" runs start ``--hogs`` processes that
each spin one core in a pure-Python loop for the whole run. For each run the table gives the wall
time, the CPU seconds of the run's own process (``os.wait4``), the share of a core it got, the ratio
to the idle run with the same threads (the target: at most 2.5x with one hog), and whether its
result rows are identical to those of the first run (same seed: they should differ at most between
thread counts, never between idle and loaded).

The full default (quick preset, four runs) takes about 20 minutes of both cores of a 2-core machine:
run it when nothing else does. The numbers choose ``magma_teach.utils.DEFAULT_THREAD_POLICY``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOG = "while True:\n    pass\n"  # one core, no memory traffic, no threads of its own


def run_once(experiment: str, preset: str, threads: str, out: Path, cache: Path) -> dict:
    """One timed child run; returns wall and CPU seconds and the result rows."""
    env = {**os.environ, "MAGMA_TEACH_PROGRESS": "0", "MAGMA_TEACH_MODEL_CACHE": "0"}  # train every time
    env.pop("MAGMA_TEACH_THREADS", None)  # --threads decides
    command = [sys.executable, "-m", "magma_teach", "run", experiment, "--preset", preset, "--threads", threads,
               "--out", str(out), "--cache-dir", str(cache), "--force"]
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a full pipe would block the child
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)  # the child's own CPU time, not the hogs'
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"run failed ({child.returncode}): {' '.join(command)}\n{errors.read().decode()}")
    (path,) = out.glob(f"{experiment}_*.json")
    blob = json.loads(path.read_text())
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rows": blob["rows"],
            "torch_threads": blob["provenance"]["torch_threads"]}


def warm_cache(experiment: str, preset: str, cache: Path) -> None:
    """Generate the experiment's benchmark into ``cache`` (untimed), so every timed run only loads it."""
    import torch

    from magma_teach.experiments import PRESETS, Context
    from magma_teach.experiments.runner import experiment_spec

    spec = experiment_spec(experiment)
    if spec.benchmark is not None:
        Context(PRESETS[preset], torch.device("cpu"), 0, cache_dir=str(cache), progress=False).benchmark(spec.benchmark)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="image-audio")
    parser.add_argument("--preset", default="quick", choices=["tiny", "quick", "full"])
    parser.add_argument("--threads", nargs="+", default=["1", "2"], help="thread counts or policies (torch, one, free)")
    parser.add_argument("--hogs", nargs="+", type=int, default=[1], help="numbers of CPU-bound processes beside a loaded run")
    args = parser.parse_args(argv)

    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="magma_threads_") as tmp:
        tmp = Path(tmp)
        warm_cache(args.experiment, args.preset, tmp / "cache")
        runs, first = [], None
        for threads in args.threads:
            for hogs in [0, *args.hogs]:
                hog_procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
                try:
                    result = run_once(args.experiment, args.preset, threads, tmp / f"out_{threads}_{hogs}", tmp / "cache")
                finally:
                    for proc in hog_procs:
                        proc.kill()
                        proc.wait()
                first = first or result
                runs.append({"threads": threads, "hogs": hogs, **result, "same_rows": result["rows"] == first["rows"]})
                print(f"  threads={threads} hogs={hogs}: {result['wall_s']:.1f} s", file=sys.stderr, flush=True)

    print(f"\n{args.experiment}, {args.preset} preset, {os.cpu_count()} cores (os.cpu_count), 1-minute load "
          f"average at the start: {load_at_start:.2f} (anything above 0 is other work)")
    print(f"{'threads':>8} {'(used)':>6} {'hogs':>5} {'wall s':>8} {'CPU s':>8} {'core share':>10} "
          f"{'x idle':>7} {'rows = first run':>17}")
    idle = {r["threads"]: r["wall_s"] for r in runs if r["hogs"] == 0}
    for r in runs:
        print(f"{r['threads']:>8} {r['torch_threads']:>6} {r['hogs']:>5} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} "
              f"{r['cpu_s'] / r['wall_s']:>10.2f} {r['wall_s'] / idle[r['threads']]:>7.2f} "
              f"{'yes' if r['same_rows'] else 'no':>17}")
    target = [r for r in runs if r["hogs"] == 1]
    if target:
        best = min(target, key=lambda r: r["wall_s"])
        print(f"\nTarget: loaded (1 hog) at most 2.5x idle. Fastest loaded: threads={best['threads']} at "
              f"{best['wall_s']:.1f} s = {best['wall_s'] / min(idle.values()):.2f}x the fastest idle run.")


if __name__ == "__main__":
    main()
