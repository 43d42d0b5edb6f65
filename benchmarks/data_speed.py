"""How long the offline benchmarks take to generate and to reload, and how hard they are.

    python benchmarks/data_speed.py [--preset quick|full] [--seed 0] [--no-difficulty]

Generates each benchmark of ``magma_teach.data.registry.BENCHMARKS`` into a fresh temporary cache
folder (deleted at the end), prints the generation time, then the time to load it again from that
cache. Targets on a 2-core CPU, quick preset: generation of both ≤ 60 s, each reload ≤ 2 s.

Then, unless ``--no-difficulty``, it prints the accuracy of a nearest-centroid classifier on simple
fixed features (``registry.nearest_centroid_baseline``) on the fixed 5-way evaluation tasks, for 1, 5
and 10 shots, for the target (log-mel mean/std) and the source modality: a benchmark worth learning
on keeps the target well above chance (20%) and well below 100%.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

from magma_teach.data import registry  # noqa: E402


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=registry.PRESETS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-difficulty", action="store_true", help="skip the nearest-centroid check")
    args = parser.parse_args(argv)

    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores); torch {torch.__version__}; "
          f"Python {platform.python_version()}; preset {args.preset}, seed {args.seed}")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          "(other work on the machine slows the wall-clock figures; CPU seconds are less affected)")
    datasets, total, total_cpu = {}, 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="magma_teach_speed_") as folder:
        for name in registry.BENCHMARKS:
            start, start_cpu = time.perf_counter(), time.process_time()
            datasets[name] = registry.load(name, preset=args.preset, seed=args.seed, cache_dir=folder)
            seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            total, total_cpu = total + seconds, total_cpu + cpu
            ds = datasets[name]
            print(f"{name:10s} generate {seconds:6.1f} s wall, {cpu:5.1f} s CPU   ({ds.num_classes} classes, "
                  f"{len(ds.target)} target clips {tuple(ds.target.x.shape)}, source {tuple(ds.source.x.shape)})")
        print(f"{'both':10s} generate {total:6.1f} s wall, {total_cpu:5.1f} s CPU   "
              "(target: <= 60 s on a 2-core CPU)")
        for name in registry.BENCHMARKS:
            start = time.perf_counter()
            registry.load(name, preset=args.preset, seed=args.seed, cache_dir=folder)
            seconds = time.perf_counter() - start
            size = sum(f.stat().st_size for f in Path(folder).glob(f"{name}-*.pt")) / 2**20
            print(f"{name:10s} reload   {seconds:6.2f} s   ({size:.0f} MiB file; target <= 2 s)")

    if not args.no_difficulty:
        print("\nnearest-centroid accuracy on the fixed 5-way eval tasks (10 draws each; chance 20%)")
        for name, ds in datasets.items():
            for role in ("target", "source"):
                accs = [registry.nearest_centroid_baseline(ds, k, modality=role) for k in (1, 5, 10)]
                kind = getattr(ds, role).kind
                print(f"{name:10s} {role} ({kind:5s}) 1-shot {accs[0]:6.1%}  5-shot {accs[1]:6.1%}  "
                      f"10-shot {accs[2]:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
