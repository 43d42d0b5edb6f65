"""The offline benchmarks by name: ``load("numbers")``, ``load("languages")``, and what they share.

``load(name, preset, seed, cache_dir, **overrides)`` builds a benchmark's generation config, then
returns the dataset from the disk cache (:mod:`magma_teach.data.cache`) or generates it there first.
``info_lines`` describes a loaded dataset in a few lines (the ``python -m magma_teach data NAME --info``
output). The pieces both benchmarks use live here too: the seeded split of concepts into
meta-train / val / meta-test, the fixed evaluation tasks, and a nearest-centroid baseline that
measures how hard a modality is.

=========  ================================  =========================  =======================
name       source → target                   concepts (quick preset)    built by
=========  ================================  =========================  =======================
numbers    handwritten 2-digit number image  90 numbers 10–99          :mod:`.numbers`
           → the number spoken (English)
languages  sentence text → the sentence      41 languages               :mod:`.languages`
           spoken in its language
=========  ================================  =========================  =======================

The full-data benchmarks (downloaded and verified on first use, see :mod:`.download`) load by name too:

=========  ================================  =========================  =======================
name       source → target                   concepts                   built by
=========  ================================  =========================  =======================
esc50      CIFAR-10/100 photo → ESC-50       110 image + 50 sound       :mod:`.esc50`   
           sound (weak pairs only)           classes
fleurs     sentence text → read aloud        14 pinned languages        :mod:`.fleurs`
recipes    ingredients → food photo          cuisine × course classes   :mod:`.recipes`
=========  ================================  =========================  =======================
"""

from __future__ import annotations

import importlib
import itertools
import math
import os

import numpy as np
import torch

from magma_teach.data.base import SPLITS, CrossModalDataset, Modality, check_concepts
from magma_teach.utils import check_positive

BENCHMARKS = ("numbers", "languages")
# The full-data tier (downloads, for online users): name → module under magma_teach.data.
FULL_BENCHMARKS = {"esc50": "esc50", "fleurs": "fleurs", "recipes": "recipes"}
PRESETS = ("quick", "full")

# Fractions of the concepts in each split (numbers: 60 / 10 / 20 of its 90 concepts).
SPLIT_FRACTIONS = {"meta_train": 6 / 9, "val": 1 / 9, "meta_test": 2 / 9}

# Independent random streams, so that e.g. more samples per concept leave the splits unchanged.
STREAM_SPLITS, STREAM_EVAL_TASKS, STREAM_SOURCE, STREAM_TARGET, STREAM_POOLS = range(5)


def rng(seed: int, stream: int) -> np.random.Generator:
    """A NumPy generator for one named ``stream`` of a dataset's ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))


def split_concepts(n_concepts: int, seed: int, n_way: int = 5,
                   field: str = "number of concepts") -> dict[str, list[int]]:
    """Shuffle concepts 0..n-1 (seeded) into disjoint sorted meta_train / val / meta_test lists.

    Sizes follow ``SPLIT_FRACTIONS`` but every split gets at least ``n_way`` concepts, so that an
    ``n_way`` task fits in each; fewer than ``3 * n_way`` concepts is a ``ValueError`` naming ``field``.
    """
    check_positive("n_way", n_way, integer=True)
    if isinstance(n_concepts, bool) or not isinstance(n_concepts, (int, np.integer)):
        raise ValueError(f"{field} must be an integer, got {n_concepts!r}")
    if n_concepts < 3 * n_way:
        raise ValueError(f"{field} must give at least {3 * n_way} concepts ({n_way} per split for "
                         f"{n_way}-way meta_train/val/meta_test tasks), got {n_concepts}")
    n_test = max(n_way, round(n_concepts * SPLIT_FRACTIONS["meta_test"]))
    n_val = max(n_way, round(n_concepts * SPLIT_FRACTIONS["val"]))
    order = rng(seed, STREAM_SPLITS).permutation(n_concepts).tolist()
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return {"meta_train": sorted(train), "val": sorted(val), "meta_test": sorted(test)}


def make_eval_tasks(concepts: list[int], n_tasks: int, n_way: int, seed: int) -> list[list[int]]:
    """``n_tasks`` fixed ``n_way``-way tasks over ``concepts`` (seeded): distinct concept sets while
    there are enough of them, each listed in a random order (that order is the label order).

    Every task holds ``n_way`` distinct concepts. ``concepts`` must not repeat an id and must hold at
    least ``n_way`` of them (``ValueError`` otherwise).
    """
    check_positive("n_eval_tasks", n_tasks, integer=True)
    check_positive("n_way", n_way, integer=True)
    concepts = check_concepts(concepts)
    if n_way > len(concepts):
        raise ValueError(f"n_way must be at most the {len(concepts)} concepts to draw tasks from, got {n_way}")
    gen = rng(seed, STREAM_EVAL_TASKS)
    n_sets = math.comb(len(concepts), n_way)
    seen, tasks = set(), []
    while len(tasks) < n_tasks:
        task = [int(c) for c in gen.choice(concepts, size=n_way, replace=False)]
        key = frozenset(task)
        if key in seen and len(seen) < n_sets:
            continue
        seen.add(key)
        tasks.append(task)
    return tasks


def range_setting(name: str, value, low, high, integer: bool = True) -> list:
    """Validate a ``[min, max]`` setting (or one number, meaning ``[v, v]``) inside ``[low, high]``."""
    pair = [value, value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    ok = (isinstance(pair, (list, tuple)) and len(pair) == 2
          and all(isinstance(v, (int, np.integer) if integer else (int, float)) and not isinstance(v, bool)
                  for v in pair)
          and low <= pair[0] <= pair[1] <= high)
    if not ok:
        kind = "integers" if integer else "numbers"
        raise ValueError(f"{name} must be a number or a [min, max] pair of {kind} with "
                         f"{low} <= min <= max <= {high}, got {value!r}")
    return [int(v) if integer else float(v) for v in pair]


def make_config(defaults: dict, presets: dict, preset: str, seed: int, overrides: dict) -> dict:
    """Merge defaults, a preset and user overrides into a generation config; unknown keys are errors."""
    if preset not in presets:
        raise ValueError(f"preset must be one of {tuple(presets)}, got {preset!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; choose from {sorted(defaults)}")
    config = {**defaults, **presets[preset], **overrides, "preset": preset, "seed": int(seed)}
    if "n_mels" in config:  # every audio benchmark: fail here, not after minutes of synthesis
        from magma_teach.data.audio import check_n_mels

        config["n_mels"] = check_n_mels(config["n_mels"])
    return config


# --- loading by name --------------------------------------------------------------------------------

def _module(name: str):
    if name not in BENCHMARKS and name not in FULL_BENCHMARKS:
        raise ValueError(f"name must be one of {', '.join([*BENCHMARKS, *FULL_BENCHMARKS])}, got {name!r}")
    # Imported on demand: each benchmark module imports the helpers above from here.
    return importlib.import_module(f"magma_teach.data.{FULL_BENCHMARKS.get(name, name)}")


def load(name: str, preset: str = "quick", seed: int = 0, cache_dir: str | os.PathLike | None = None,
         progress: bool = True, **overrides) -> CrossModalDataset:
    """The benchmark ``name`` for ``preset`` and ``seed``.

    ``name`` is an offline benchmark (``"numbers"``, ``"languages"``: generated, no network) or a
    full-data one (``"esc50"``: CIFAR → ESC-50, ``"fleurs"``, ``"recipes"``: downloaded and verified
    on first use, with progress bars unless ``progress=False``). ``overrides`` change single settings
    of the config (see ``DEFAULTS`` of each module, e.g. ``load("numbers", high=40, snr_db=5)``).
    The first call builds the dataset and caches it; later calls with the same settings reload it.
    ``dataset.info["cache_path"]`` says where.
    """
    from magma_teach.data.cache import cache_path, cached, dataset_from_payload, dataset_to_payload, display_path

    module = _module(name)
    config = module.make_config(preset=preset, seed=seed, **overrides)

    def build():
        if name in FULL_BENCHMARKS:  # these read downloads, which live in the cache folder too
            return module.build(config, cache_dir=cache_dir, progress=progress)
        return module.build(config)

    payload = cached(name, config, lambda: dataset_to_payload(build()), cache_dir, validate=dataset_from_payload)
    dataset = dataset_from_payload(payload)
    dataset.info["cache_path"] = display_path(cache_path(name, config, cache_dir))
    return dataset


def info_lines(dataset: CrossModalDataset) -> list[str]:
    """A short description: classes, split sizes, sample rate, feature shapes, cache path."""
    info = dataset.info
    splits = ", ".join(f"{s} {len(dataset.splits[s])}" for s in SPLITS)
    lines = [f"{dataset.name}: {info.get('description', '')}".rstrip(": "),
             f"{dataset.num_classes} classes",
             f"splits (classes): {splits}; {len(dataset.eval_tasks)} fixed "
             f"{len(dataset.eval_tasks[0]) if dataset.eval_tasks else 0}-way eval tasks over meta_test"]
    if "sample_rate" in info:  # the audio side, if there is one
        origin = "synthesis" if dataset.name in BENCHMARKS else "recordings"
        lines.append(f"sample rate: {info['sample_rate']} Hz {origin}, features at {info.get('feature_rate', '?')} "
                     f"Hz ({info.get('n_mels', '?')} log-mel bands, 10 ms hop)")
    for role, m in (("source", dataset.source), ("target", dataset.target)):
        lines.append(f"{role}: {m.kind} x {tuple(m.x.shape)} {str(m.x.dtype).replace('torch.', '')}")
    n_clusters = int(dataset.clusters.unique().numel())
    lines.append(f"strong pairs: {len(dataset.pairs)}; weak-pair clusters: {n_clusters}")
    lines.append(f"cache: {info.get('cache_path', '(not cached)')}")
    return lines


# --- how hard is a modality? ------------------------------------------------------------------------

def simple_features(modality: Modality) -> torch.Tensor:
    """Fixed features for a baseline: per-band mean and std over real frames (audio, → (N, 2·n_mels)),
    flattened pixels (image), character-id histogram (text), the vector itself (vector)."""
    x, lengths = modality.x, modality.lengths
    if modality.kind == "audio":
        mask = (torch.arange(x.shape[-1]) < lengths[:, None])[:, None, :].float()  # (N, 1, frames)
        n = lengths.clamp(min=1)[:, None].float()
        mean = (x * mask).sum(-1) / n
        var = (((x - mean[..., None]) * mask) ** 2).sum(-1) / n
        return torch.cat([mean, var.sqrt()], dim=1)
    if modality.kind == "text":
        hist = torch.zeros(len(x), int(x.max()) + 1)
        hist.scatter_add_(1, x, torch.ones_like(x, dtype=torch.float))
        return hist[:, 1:] / lengths.clamp(min=1)[:, None].float()  # drop padding id 0
    return x.reshape(len(x), -1).float()


def nearest_centroid_baseline(dataset: CrossModalDataset, shots: int, modality: str = "target",
                              n_query: int | None = None, repeats: int = 10, seed: int = 0) -> float:
    """Mean accuracy of a nearest-centroid classifier on :func:`simple_features` over the fixed
    evaluation tasks of ``dataset`` (each repeated ``repeats`` times with fresh support/query draws).

    This is the "is the benchmark too easy?" check: no learning, just class means of fixed
    features. With ``n_query=None`` every example not in the support is a query (at most 10 per class).
    """
    from magma_teach.data.audio import one_thread

    with one_thread():  # many tiny tensor operations: threads only add overhead
        return _nearest_centroid(dataset, shots, modality, n_query, repeats, seed)


def _nearest_centroid(dataset, shots, modality, n_query, repeats, seed) -> float:
    from magma_teach.data.episodes import sample_classification_task
    from magma_teach.evaluate import top_share

    mod = getattr(dataset, modality)
    feats = simple_features(mod)
    per_class = min(len(mod.indices_of(c)) for task in dataset.eval_tasks for c in task)
    q = n_query if n_query is not None else min(10, per_class - shots)
    gen = torch.Generator().manual_seed(seed)
    index_of = torch.arange(len(mod))
    proxy = Modality(mod.kind, index_of, torch.ones(len(mod)), mod.labels)  # tasks of example indices
    correct = total = 0
    for task_concepts, _ in itertools.product(dataset.eval_tasks, range(repeats)):
        task = sample_classification_task(proxy, task_concepts, len(task_concepts), shots, q, gen,
                                          fixed_concepts=True)
        support, query = feats[task.support[0]], feats[task.query[0]]
        centroids = torch.stack([support[task.support_y == c].mean(0) for c in range(len(task_concepts))])
        # nearest centroid, a tie between centroids counting its share (never a lucky first pick)
        hit = torch.nn.functional.one_hot(task.query_y, len(task_concepts)).bool()
        correct += float(top_share(-torch.cdist(query, centroids).numpy(), hit.numpy()).sum())
        total += len(task.query_y)
    return correct / total
