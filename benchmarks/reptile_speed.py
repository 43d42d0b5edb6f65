"""Time task-batched Reptile (eager and the compiled fast path) against the sequential reference.

Workload: T alignment tasks of 5-way 5-shot pairs (25 image/speech pairs each, shaped like the
``numbers`` benchmark: 1×16×32 images, 40-band log-mel spectrograms of up to 144 frames), 5 inner Adam
steps, the package's image and audio encoders; one meta-iteration = adapt to the T tasks + the outer
update. Every method runs in this process on the same tasks:

* ``sequential``: the reference, one task after another with ``torch.optim.Adam``;
* ``eager``: ``batched_adapt`` with ``InnerLoop(fast=False)`` (``vmap(grad(loss))`` over the task axis);
* ``fast``: ``batched_adapt`` with ``InnerLoop(fast=True)`` (compiled steps; one CUDA graph per step on CUDA).

    python benchmarks/reptile_speed.py [--device cpu|cuda|auto] [--tasks 16 32 64] [--methods ...]
                                       [--repeats R] [--threads N] [--json PATH] [--tiny]

Each repeat is timed on its own (after warm-up calls; the fast path's first call, which compiles, is
reported as ``first_call_s``), so the JSON holds the spread as well as the median. Tasks/s = T ×
meta-iterations/s. ``--tiny`` shrinks the encoders and inputs for a smoke test of the script itself.
A table goes to stdout, then the JSON (or the JSON to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from dataclasses import replace

import torch

from magma_teach.data.episodes import AlignmentTask, stack_tasks
from magma_teach.encoders import AudioEncoder, Classifier, ImageEncoder
from magma_teach.magma import CrossModalModel, alignment_loss
from magma_teach.reptile import InnerLoop, Reptile, batched_adapt, meta_step
from magma_teach.utils import pick_device

METHODS = ("sequential", "eager", "fast")
SIZES = {  # images (C, H, W), log-mel bands, frames, pairs per task, encoder widths
    "full": {"image": (1, 16, 32), "mels": 40, "frames": 144, "pairs": 25, "dim": 64, "image_width": 16,
             "audio_width": 64},
    "tiny": {"image": (1, 8, 8), "mels": 8, "frames": 16, "pairs": 6, "dim": 8, "image_width": 4, "audio_width": 8},
}


def make_tasks(n_tasks: int, size: dict, device) -> list[AlignmentTask]:
    """T alignment tasks drawn on the CPU with a fixed seed, then moved (the same numbers on every device)."""
    g = torch.Generator().manual_seed(0)
    pairs, frames = size["pairs"], size["frames"]
    tasks = []
    for _ in range(n_tasks):
        images = torch.rand(pairs, *size["image"], generator=g)
        mels = torch.randn(pairs, size["mels"], frames, generator=g)
        lengths = torch.randint(frames // 2, frames + 1, (pairs,), generator=g)
        ones, groups = torch.ones(pairs, dtype=torch.long), torch.arange(pairs)
        tasks.append(AlignmentTask((images.to(device), ones.to(device)), (mels.to(device), lengths.to(device)),
                                   groups.to(device), groups.to(device)))
    return tasks


def make_model(size: dict, device) -> CrossModalModel:
    torch.manual_seed(0)
    return CrossModalModel(ImageEncoder(size["image"][0], dim=size["dim"], width=size["image_width"]),
                           AudioEncoder(size["mels"], dim=size["dim"], width=size["audio_width"]),
                           Classifier(size["dim"])).to(device)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, device) -> float:
    """Seconds of one call of ``run``, the device's queue drained before and after."""
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - start


def measure(method: str, n_tasks: int, size: dict, device, repeats: int, warmup: int) -> dict:
    """One row: per-repeat seconds of a meta-iteration of ``method`` at T = ``n_tasks``, and tasks/s."""
    model = make_model(size, device)
    tasks = make_tasks(n_tasks, size, device)
    loss = alignment_loss(model, temperature=0.1, weak=False)
    params = model.parts("source", "target")
    inner = InnerLoop(steps=5, lr=1e-3, fast=method == "fast")
    if method == "sequential":
        def run():
            meta_step(loss, params, tasks, inner, 0.1, batched=False)
    else:
        stacked, learner = stack_tasks(tasks), Reptile(params, inner)

        def run():
            learner.step(loss, stacked, 0.1)
    load_before = os.getloadavg()[0]
    first = timed(run, device)  # compiles on the fast path
    for _ in range(warmup):  # reduce-overhead records its CUDA graphs in these calls
        run()
    seconds = [timed(run, device) for _ in range(repeats)]
    rates = [n_tasks / s for s in seconds]
    return {"method": method, "T": n_tasks, "first_call_s": round(first, 4),
            "seconds": [round(s, 5) for s in seconds], "tasks_per_s": round(statistics.median(rates), 2),
            "tasks_per_s_min": round(min(rates), 2), "tasks_per_s_max": round(max(rates), 2),
            "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def fast_vs_eager(size: dict, device, n_tasks: int = 4) -> float:
    """Largest |fast − eager| over the adapted parameters after 5 SGD steps on this workload (float32).

    SGD, because with Adam a gradient that is zero up to rounding becomes a ±lr step whose sign is the
    rounding noise (see tests/test_reptile.py), which says nothing about the compiled code.
    """
    model = make_model(size, device)
    loss = alignment_loss(model, temperature=0.1, weak=False)
    params, stacked = model.parts("source", "target"), stack_tasks(make_tasks(n_tasks, size, device))
    inner = InnerLoop(steps=5, lr=1e-2, optimizer="sgd")
    eager = batched_adapt(loss, params, stacked, replace(inner, fast=False))
    fast = batched_adapt(loss, params, stacked, replace(inner, fast=True))
    return max(float((fast[k] - eager[k]).abs().max()) for k in params)


def ratios(rows: list[dict]) -> dict:
    """Per T: median tasks/s of each method over the others (eager/sequential, fast/sequential, fast/eager)."""
    out = {}
    for n_tasks in sorted({r["T"] for r in rows}):
        rate = {r["method"]: r["tasks_per_s"] for r in rows if r["T"] == n_tasks}
        pairs = [("eager", "sequential"), ("fast", "sequential"), ("fast", "eager")]
        out[f"T={n_tasks}"] = {f"{a}/{b}": round(rate[a] / rate[b], 2) for a, b in pairs if a in rate and b in rate}
    return out


def table(rows: list[dict], summary: dict) -> str:
    lines = [f"{'T':>4}  {'method':<10} {'tasks/s (median)':>17} {'min':>10} {'max':>10} {'first call s':>13}"]
    for r in rows:
        lines.append(f"{r['T']:>4}  {r['method']:<10} {r['tasks_per_s']:>17.1f} {r['tasks_per_s_min']:>10.1f} "
                     f"{r['tasks_per_s_max']:>10.1f} {r['first_call_s']:>13.2f}")
    for key, values in summary.items():
        lines.append(f"{key}: " + ", ".join(f"{k} = {v:.2f}x" for k, v in values.items()))
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--tasks", type=int, nargs="+", default=[16, 32, 64], help="meta-batch sizes T")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--repeats", type=int, default=5, help="timed meta-iterations per method and T")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls after the first (CUDA graphs record here)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="write the JSON here instead of stdout")
    parser.add_argument("--tiny", action="store_true", help="tiny encoders and inputs (a smoke test of the script)")
    parser.add_argument("--no-check", action="store_true", help="skip the fast-vs-eager comparison")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\._inductor")  # inductor's own deprecations
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    size = SIZES["tiny" if args.tiny else "full"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    result = {"device": name, "torch": torch.__version__, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
              "workload": {"size": "tiny" if args.tiny else "full", **size, "inner_steps": 5, "optimizer": "adam"},
              "rows": [], "ratios": {}}
    for n_tasks in args.tasks:
        for method in args.methods:
            result["rows"].append(measure(method, n_tasks, size, device, args.repeats, args.warmup))
            result["ratios"] = ratios(result["rows"])
            write(result, args.json)  # after every row: a run stopped by a time limit keeps what it measured
    if "fast" in args.methods and not args.no_check:
        result["max_abs_diff_fast_vs_eager_sgd"] = fast_vs_eager(size, device)
        write(result, args.json)
    print(f"device: {name}; torch {torch.__version__}; {result['workload']['pairs']} pairs per task, 5 inner Adam steps")
    print(table(result["rows"], result["ratios"]))
    if "max_abs_diff_fast_vs_eager_sgd" in result:
        print(f"fast vs eager, 5 SGD steps: max |difference| = {result['max_abs_diff_fast_vs_eager_sgd']:.2e}")
    if not args.json:
        print(json.dumps(result, indent=1))
    return result


def write(result: dict, path: str | None) -> None:
    if path:
        with open(path, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
