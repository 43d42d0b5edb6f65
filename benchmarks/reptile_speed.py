"""Time task-batched Reptile against the sequential reference on one meta-alignment workload.

Workload: T alignment tasks of 5-way 5-shot pairs (25 image/speech pairs each, shaped like the
``numbers`` benchmark: 1×16×32 images, 40-band log-mel spectrograms of up to 144 frames), 5 inner Adam
steps, the package's image and audio encoders. Both methods run in this process on the same tasks.

    python benchmarks/reptile_speed.py [--device cpu|cuda] [--tasks T] [--repeats R] [--threads N]

The last line is ``ratio=N.Nx`` (batched meta-iterations/s over sequential).
"""

from __future__ import annotations

import argparse
import time

import torch

from magma_teach.data.episodes import AlignmentTask, stack_tasks
from magma_teach.encoders import AudioEncoder, Classifier, ImageEncoder
from magma_teach.magma import CrossModalModel, alignment_loss
from magma_teach.reptile import InnerLoop, meta_step
from magma_teach.utils import pick_device


def make_tasks(n_tasks: int, pairs: int, device) -> list[AlignmentTask]:
    g = torch.Generator().manual_seed(0)
    tasks = []
    for _ in range(n_tasks):
        images = torch.rand(pairs, 1, 16, 32, generator=g)
        mels = torch.randn(pairs, 40, 144, generator=g)
        lengths = torch.randint(60, 145, (pairs,), generator=g)
        ones, groups = torch.ones(pairs, dtype=torch.long), torch.arange(pairs)
        tasks.append(AlignmentTask((images.to(device), ones.to(device)), (mels.to(device), lengths.to(device)),
                                   groups.to(device), groups.to(device)))
    return tasks


def iterations_per_second(run, repeats: int, device) -> float:
    run()  # warm-up (kernel selection, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(0)
    model = CrossModalModel(ImageEncoder(1, dim=64), AudioEncoder(40, dim=64), Classifier(64)).to(device)
    tasks = make_tasks(args.tasks, pairs=25, device=device)
    stacked = stack_tasks(tasks)
    loss = alignment_loss(model, temperature=0.1, weak=False)
    params = model.parts("source", "target")
    inner = InnerLoop(steps=5, lr=1e-3)

    batched = iterations_per_second(lambda: meta_step(loss, params, stacked, inner, 0.1), args.repeats, device)
    sequential = iterations_per_second(lambda: meta_step(loss, params, tasks, inner, 0.1, batched=False),
                                       args.repeats, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; T={args.tasks} tasks, 25 pairs, 5 inner Adam steps")
    print(f"batched:    {batched:.3f} meta-iterations/s")
    print(f"sequential: {sequential:.3f} meta-iterations/s")
    print(f"ratio={batched / sequential:.1f}x")


if __name__ == "__main__":
    main()
