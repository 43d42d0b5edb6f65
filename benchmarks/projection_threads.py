"""UMAP projection from several threads, and torch's speed in the same process before and after.

Two properties of :func:`magma_teach.projection.project` (``method="umap"``) are measured:

1. **No crash from threads.** numba's ``workqueue`` threading layer aborts the whole process when two
   threads enter its parallel code at once; ``project`` serializes UMAP behind a lock. Here
   ``--threads`` threads call ``project`` on the same points at once, and every result must equal
   the result of a single call (same seed → same picture).
2. **Torch keeps its speed.** The package forces the ``workqueue`` layer because numba's OpenMP layer
   shares the OpenMP runtime with torch: once its thread pool exists, torch in the same process can
   slow down many times (about 35× in MAGMA training, when the UMAP chapter was written). A torch
   workload is timed before any projection and after the threaded projections: a float32 matrix
   product (``--workload matmul``, the default) or 5 iterations of MAGMA on the concept world
   (``--workload train``).

Each layer runs in a fresh child process (a threading layer is fixed at numba's first parallel
call), ``--runs`` times each, alternating: ``workqueue`` (the package's choice) and, for
comparison, ``default`` (numba's own choice, set through ``NUMBA_THREADING_LAYER``, which the
package respects): TBB if installed, else OpenMP.
Asking for ``omp`` by name does not work here: pynndescent (imported by umap-learn) replaces an
explicit ``omp`` by ``workqueue`` when TBB is missing. One line per layer::

    python benchmarks/projection_threads.py [--threads 4] [--points 300] [--size 256] [--runs 3]
                                           [--workload matmul|train] [--layers workqueue default]

A crashing child shows up as its exit status (134 = SIGABRT) instead of a result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time


def matmul_ms(size: int, repeats: int = 50, rounds: int = 21) -> float:
    """The best over ``rounds`` of the mean milliseconds of one (size × size) @ (size × size) float32
    product: on a shared machine the best round is the one least disturbed by other programs."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    start = time.perf_counter()
    while time.perf_counter() - start < 0.5:  # warm up the kernels and the thread pool
        a @ b
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        times.append((time.perf_counter() - start) / repeats * 1000)
    return min(times)


def train_s() -> float:
    """The faster of two runs, in seconds, of 5 MAGMA iterations on the default concept world."""
    import torch

    from magma_teach.data.conceptworld import concept_world
    from magma_teach.magma import CrossModalModel, MagmaConfig, train_magma

    world = concept_world(seed=0)
    times = []
    for _ in range(2):
        torch.manual_seed(0)
        model = CrossModalModel.for_dataset(world, dim=16)
        start = time.perf_counter()
        train_magma(model, world, MagmaConfig(iterations=5), seed=0, progress=False)
        times.append(time.perf_counter() - start)
    return min(times)


def child(args) -> None:
    """Measure in this process and print one JSON line."""
    import numpy as np
    import torch

    from magma_teach.projection import project

    z = np.random.default_rng(0).standard_normal((args.points, 16)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    measure = (lambda: matmul_ms(args.size)) if args.workload == "matmul" else train_s
    before = measure()
    start = time.perf_counter()
    reference = project(z, seed=0)  # also compiles (or loads) numba's code
    single_s = time.perf_counter() - start
    results = [None] * args.threads

    def work(i):
        results[i] = project(z, seed=0)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(args.threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    threads_s = time.perf_counter() - start
    after = measure()
    import numba

    print(json.dumps({
        "layer": numba.threading_layer(), "torch_threads": torch.get_num_threads(), "threads": args.threads,
        "same_as_single_call": all(r is not None and np.array_equal(r, reference) for r in results),
        "first_call_s": round(single_s, 1), "threaded_calls_s": round(threads_s, 1),
        "workload": args.workload, "before": round(before, 3), "after": round(after, 3),
        "slowdown": round(after / before, 2)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4, help="threads calling project at once (default 4)")
    parser.add_argument("--points", type=int, default=300, help="points to project (default 300)")
    parser.add_argument("--size", type=int, default=256, help="side of the timed torch matrices (default 256)")
    parser.add_argument("--layers", nargs="+", default=["workqueue", "default"], choices=["workqueue", "default", "omp", "tbb"],
                        help="numba threading layers to try, each in a fresh process")
    parser.add_argument("--workload", default="matmul", choices=["matmul", "train"],
                        help="the torch work timed before and after: a matrix product (ms) or MAGMA training (s)")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per layer, alternating (default 3)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cores: {os.cpu_count()}; load average at start: {load:.1f}; python {sys.version.split()[0]}", flush=True)
    slowdowns = {layer: [] for layer in args.layers}
    for _ in range(args.runs):
        for layer in args.layers:
            env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
            cmd = [sys.executable, __file__, "--child", "--threads", str(args.threads), "--points",
                   str(args.points), "--size", str(args.size), "--workload", args.workload]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            if done.returncode != 0 or not lines:
                tail = " | ".join(done.stderr.strip().splitlines()[-3:])
                print(f"{layer}: exit status {done.returncode} (134 = SIGABRT): {tail}", flush=True)
                continue
            print(f"{layer}: {lines[-1]}", flush=True)
            slowdowns[layer].append(json.loads(lines[-1])["slowdown"])
    for layer, values in slowdowns.items():
        if values:
            print(f"{layer}: {args.workload} time after / before, {len(values)} processes: "
                  f"{', '.join(f'{v:.2f}' for v in values)} (median {statistics.median(values):.2f})")


if __name__ == "__main__":
    main()
