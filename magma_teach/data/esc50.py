"""*esc50*: photos of objects (CIFAR-10/100 images) → the sounds they make (ESC-50 audio).

The paper's image → audio benchmark, built from real downloaded data (the offline stand-in with the
same shape is :mod:`magma_teach.data.numbers`):

* **source** (abundant, labelled): CIFAR-10 and CIFAR-100 training images, (3, 32, 32) float32 in
  [0, 1], up to ``images_per_class`` per class (seeded choice); ``source_classes="all"`` uses all 110
  classes, ``"clustered"`` only the 34 that belong to a weak-pair cluster;
* **target** (scarce): the 2,000 five-second clips of ESC-50 (50 classes × 40, 44.1 kHz mono), as
  standardized log-mel spectrograms (``n_mels`` bands × up to ``max_frames`` 10 ms frames at 16 kHz);
* **no strong pairs**: no photo *is* a recording, so ``pairs`` is empty and alignment is weak;
* **weak-pair clusters**: :data:`CLUSTERS`, 17 groups of CIFAR classes and ESC-50 classes that belong
  together (e.g. *bird* = {bird} ↔ {rooster, hen, crow, chirping_birds}). They name 34 CIFAR and 35
  ESC-50 classes; every other class is a cluster of its own (ids 17, 18, ...), so it never forms a weak
  pair;
* **splits** (seeded): meta-train = every used CIFAR class + ``n_meta_train_audio`` (23) of the 35
  clustered ESC-50 classes, drawn so that each cluster keeps at least one; their 23 × 40 = 920 clips
  are the unlabeled audio that weak alignment sees. The other 27 ESC-50 classes are divided into
  validation (``n_val_audio``, 7) and meta-test (20): the ``n_eval_tasks`` fixed ``n_way``-way tasks
  are over sound classes never heard in meta-training.

Concept ids: the used CIFAR classes first (CIFAR-10 order, then CIFAR-100 order), then the 50 ESC-50
classes in ESC-50 ``target`` order. ``class_names`` are ``"cifar:<name>"`` and ``"esc50:<name>"``.

Downloads go through :mod:`magma_teach.data.download` (verified, atomic, mirrorable): the CIFAR
archives are pinned by torchvision's own MD5s, and torchvision re-checks every extracted batch file;
ESC-50 is fetched at a fixed commit whose ``meta/esc50.csv`` is pinned (a GitHub archive is re-built
on the fly, so only its contents can be pinned).

Attribution: ESC-50 by Karol J. Piczak ("ESC: Dataset for Environmental Sound Classification", ACM
Multimedia 2015), licensed CC BY-NC 3.0 (clips from freesound.org; non-commercial use only). CIFAR-10
and CIFAR-100 by Alex Krizhevsky ("Learning Multiple Layers of Features from Tiny Images", 2009).
The clusters follow the paper (Liang et al., 2021), as read from a public re-implementation.
"""

from __future__ import annotations

import csv
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import torch

from magma_teach.data.audio import check_n_mels, log_mel, one_thread, pad_features, read_wav, standardize
from magma_teach.data.base import CrossModalDataset, Modality
from magma_teach.data.download import ChecksumError, Remote, fetch_folder
from magma_teach.data.registry import STREAM_SOURCE, STREAM_SPLITS, make_eval_tasks, rng
from magma_teach.data.registry import make_config as _make_config
from magma_teach.utils import check_positive
from magma_teach.utils import progress as progress_bar

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CLUSTERS",
    "DEFAULTS",
    "ESC50_CLASSES",
    "PRESETS",
    "audio_split",
    "build",
    "download",
    "download_cifar",
    "make_config",
]

# --- the classes and their weak-pair clusters ---------------------------------------------------------

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_CLASSES = [  # the fine labels, alphabetical as in the data set's meta file
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger",
    "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]
ESC50_CLASSES = [  # index = the ``target`` column of meta/esc50.csv
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
    "pouring_water", "toilet_flush", "thunderstorm",
    "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps", "laughing",
    "brushing_teeth", "snoring", "drinking_sipping",
    "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks", "can_opening",
    "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick", "glass_breaking",
    "helicopter", "chainsaw", "siren", "car_horn", "engine", "train", "church_bells", "airplane",
    "fireworks", "hand_saw",
]

# cluster name → (CIFAR-10/100 classes, ESC-50 classes). Cluster id = position in this dict (0..16).
CLUSTERS: dict[str, tuple[list[str], list[str]]] = {
    "automobile": (["automobile", "truck", "streetcar", "bus", "motorcycle", "pickup_truck"], ["car_horn", "engine"]),
    "baby": (["baby"], ["crying_baby"]),
    "bird": (["bird"], ["rooster", "hen", "crow", "chirping_birds"]),
    "cat": (["cat"], ["cat"]),
    "cattle": (["cattle", "horse"], ["pig", "cow", "sheep"]),
    "clock": (["clock"], ["clock_alarm", "clock_tick"]),
    "computer": (["keyboard"], ["mouse_click", "keyboard_typing"]),
    "containers_can": (["can"], ["can_opening"]),
    "containers_glass": (["bottle", "bowl", "cup", "plate"], ["glass_breaking"]),
    "dog": (["dog"], ["dog"]),
    "frog": (["frog"], ["frog"]),
    "furniture": (["chair", "table", "wardrobe"], ["door_wood_creaks", "door_wood_knock"]),
    "human": (["boy", "girl", "man", "woman"], ["sneezing", "clapping", "breathing", "coughing", "footsteps",
                                                "laughing", "brushing_teeth", "snoring", "drinking_sipping"]),
    "insect": (["bee", "beetle", "butterfly", "cockroach"], ["insects", "crickets"]),
    "plane": (["airplane"], ["airplane"]),
    "sea": (["sea"], ["sea_waves"]),
    "train": (["train"], ["train"]),
}

# --- where the data comes from ------------------------------------------------------------------------

CIFAR_BASE_URL = "https://www.cs.toronto.edu/~kriz"
CIFAR_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
ESC50_BASE_URL = "https://github.com/karolpiczak/ESC-50/archive"
# The latest commit of karolpiczak/ESC-50 as of late 2025, pinned by several unrelated projects.
ESC50_COMMIT = "33c8ce9eb2cf0b1c2f8bcf322eb349b6be34dbb6"
# SHA-256 of meta/esc50.csv. Several independent projects publish its MD5 (54a0d0055a10bb7df84ad340a148722e);
# we rebuilt the file from the repository's earlier root-level esc50.csv (same 2000 rows, new header),
# checked that the rebuilt bytes have exactly that published MD5, and hashed them with SHA-256.
ESC50_CSV_HASH = "sha256:ca660da60191a97de289983a05821c9382d852a38a2ba8428980816b68cf6246"
ESC50_RATE = 44_100  # Hz, 16-bit mono PCM

# --- settings -------------------------------------------------------------------------------------------

SOURCE_CLASSES = ("all", "clustered")
DEFAULTS = {
    "version": 1,  # bump when the build changes, so old cache files are not reused
    "images_per_class": 100,  # CIFAR training images per class (at most 500 exist in CIFAR-100)
    "source_classes": "all",  # "all": the 110 CIFAR-10 + CIFAR-100 classes; "clustered": the 34 in CLUSTERS
    "n_mels": 40, "max_frames": 500,  # 5 s at 10 ms frames (an ESC-50 clip gives 501)
    "n_meta_train_audio": 23,  # clustered ESC-50 classes whose clips meta-training sees (paper: 23 × 40 = 920)
    "n_val_audio": 7,  # ESC-50 classes for validation; the rest (20 by default) are meta-test
    "n_way": 5, "n_eval_tasks": 8,
}
PRESETS = {"quick": {"images_per_class": 100}, "full": {"images_per_class": 500}}


def make_config(preset: str = "quick", seed: int = 0, **overrides) -> dict:
    """The full build config for ``preset`` with ``overrides``, validated (ValueError names the field)."""
    cfg = _make_config(DEFAULTS, PRESETS, preset, seed, overrides)
    for name in ("images_per_class", "n_mels", "max_frames", "n_meta_train_audio", "n_val_audio", "n_way",
                 "n_eval_tasks"):
        check_positive(name, cfg[name], integer=True)
    check_n_mels(cfg["n_mels"])
    if cfg["source_classes"] not in SOURCE_CLASSES:
        raise ValueError(f"source_classes must be one of {SOURCE_CLASSES}, got {cfg['source_classes']!r}")
    n_clustered = len(clustered_audio_classes())
    if not len(CLUSTERS) <= cfg["n_meta_train_audio"] <= n_clustered:
        raise ValueError(f"n_meta_train_audio must be in [{len(CLUSTERS)}, {n_clustered}] (at least one "
                         f"audio class per cluster, drawn from the clustered ones), got {cfg['n_meta_train_audio']}")
    if cfg["n_val_audio"] < cfg["n_way"]:
        raise ValueError(f"n_val_audio must be at least n_way={cfg['n_way']} so that a validation task fits, "
                         f"got {cfg['n_val_audio']}")
    n_test = len(ESC50_CLASSES) - cfg["n_meta_train_audio"] - cfg["n_val_audio"]
    if n_test < cfg["n_way"]:
        raise ValueError(f"n_meta_train_audio + n_val_audio must leave at least n_way={cfg['n_way']} of the "
                         f"{len(ESC50_CLASSES)} ESC-50 classes for meta-test, got {n_test}")
    return cfg


# --- pure helpers ----------------------------------------------------------------------------------------

def clustered_audio_classes() -> list[str]:
    """The ESC-50 classes named by :data:`CLUSTERS` (35), in ESC-50 order."""
    named = {name for _, audio in CLUSTERS.values() for name in audio}
    return [name for name in ESC50_CLASSES if name in named]


def source_classes(which: str = "all") -> list[tuple[str, str]]:
    """The CIFAR classes used as source concepts, in concept order: ``[(dataset, class name), ...]``.

    ``which="all"``: CIFAR-10 then CIFAR-100 (110); ``"clustered"``: only those in :data:`CLUSTERS` (34).
    """
    pairs = [("cifar10", c) for c in CIFAR10_CLASSES] + [("cifar100", c) for c in CIFAR100_CLASSES]
    if which == "all":
        return pairs
    named = {name for images, _ in CLUSTERS.values() for name in images}
    return [(dataset, name) for dataset, name in pairs if name in named]


def audio_split(seed: int, n_meta_train: int = 23, n_val: int = 7) -> dict[str, list[str]]:
    """Split the 50 ESC-50 classes (seeded) into ``meta_train`` / ``val`` / ``meta_test`` class names.

    ``meta_train``: one random ESC-50 class of every cluster, then ``n_meta_train - 17`` more of the
    remaining clustered ones, so each cluster can form weak pairs in meta-training. ``val``: ``n_val``
    of the other classes; ``meta_test``: the rest. Each list is in ESC-50 order.
    """
    gen = rng(seed, STREAM_SPLITS)
    chosen = {str(gen.choice(audio)) for _, audio in CLUSTERS.values()}
    others = [name for name in clustered_audio_classes() if name not in chosen]
    chosen |= {str(name) for name in gen.permutation(others)[:n_meta_train - len(CLUSTERS)]}
    rest = [str(name) for name in gen.permutation([c for c in ESC50_CLASSES if c not in chosen])]
    return {"meta_train": _in_esc50_order(chosen), "val": _in_esc50_order(rest[:n_val]),
            "meta_test": _in_esc50_order(rest[n_val:])}


def _in_esc50_order(names) -> list[str]:
    wanted = set(names)
    return [c for c in ESC50_CLASSES if c in wanted]


def cluster_ids(concepts: list[tuple[str, str]]) -> tuple[list[int], list[str]]:
    """Cluster id of each ``(modality, class name)`` concept and the name of every cluster id.

    ``modality`` is ``"cifar"`` or ``"esc50"``. Ids 0..16 are :data:`CLUSTERS`; each other concept gets
    its own id from 17 on (named after the concept), so it never forms a weak pair.
    """
    lookup = {}
    for k, (images, audio) in enumerate(CLUSTERS.values()):
        lookup.update({("cifar", name): k for name in images})
        lookup.update({("esc50", name): k for name in audio})
    names, ids = list(CLUSTERS), []
    for concept in concepts:
        if concept not in lookup:
            lookup[concept] = len(names)
            names.append(":".join(concept))
        ids.append(lookup[concept])
    return ids, names


# --- downloads ----------------------------------------------------------------------------------------

def _torchvision_class(name: str):
    from torchvision.datasets import CIFAR10, CIFAR100

    return {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]


def cifar_remote(name: str) -> Remote:
    """The archive of ``"cifar10"`` or ``"cifar100"``, pinned by torchvision's ``tgz_md5``."""
    md5 = _torchvision_class(name).tgz_md5  # read at call time: torchvision's own constant
    return Remote(name, CIFAR_BASE_URL, CIFAR_ARCHIVES[name], known_hash=f"md5:{md5}")


def esc50_remote() -> Remote:
    """The ESC-50 repository at :data:`ESC50_COMMIT`, its ``meta/esc50.csv`` pinned."""
    top = f"ESC-50-{ESC50_COMMIT}"
    return Remote("esc50", ESC50_BASE_URL, f"{ESC50_COMMIT}.zip",
                  key_files={f"{top}/meta/esc50.csv": ESC50_CSV_HASH})


def open_cifar(name: str, folder: Path):
    """torchvision's CIFAR-10/100 training set from an extracted ``folder`` (its MD5 checks run here).

    A failed check removes ``folder`` (the next call downloads afresh) and raises ``ChecksumError``.
    """
    try:
        data = _torchvision_class(name)(root=str(folder), train=True, download=False)
    except (RuntimeError, OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
        shutil.rmtree(folder, ignore_errors=True)
        raise ChecksumError(f"{name}: torchvision's checksum check of the extracted files failed "
                            f"({type(err).__name__}); removed them, run again to download afresh") from None
    expected = CIFAR10_CLASSES if name == "cifar10" else CIFAR100_CLASSES
    if list(data.classes) != expected:
        shutil.rmtree(folder, ignore_errors=True)
        raise ChecksumError(f"{name}: the class names in the download are not the expected ones; removed it")
    return data


def download_cifar(cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Path]:
    """Download, extract and check CIFAR-10 and CIFAR-100; return ``{"cifar10": folder, "cifar100": folder}``."""
    folders = {name: fetch_folder(cifar_remote(name), cache_dir, progress) for name in CIFAR_ARCHIVES}
    for name, folder in folders.items():
        open_cifar(name, folder)  # runs torchvision's per-file checks now, not at first use
    return folders


def _fetch_all(cache_dir, progress: bool) -> dict[str, Path]:
    # ESC-50 first: its pin is the most likely to fail (an upstream change), and failing before the
    # CIFAR downloads leaves nothing behind.
    folders = {"esc50": fetch_folder(esc50_remote(), cache_dir, progress) / f"ESC-50-{ESC50_COMMIT}"}
    folders.update({name: fetch_folder(cifar_remote(name), cache_dir, progress) for name in CIFAR_ARCHIVES})
    return folders


def download(config: dict | None = None, cache_dir: str | os.PathLike | None = None,
             progress: bool = True) -> dict[str, Path]:
    """Download and verify everything the benchmark reads: ``{"esc50", "cifar10", "cifar100"}`` → folder.

    ``config`` is accepted for symmetry with :func:`build`; every setting needs all three downloads.
    """
    folders = _fetch_all(cache_dir, progress)
    for name in CIFAR_ARCHIVES:
        open_cifar(name, folders[name])
    return folders


# --- source: CIFAR images ----------------------------------------------------------------------------

def cifar_images(sets: dict, classes: list[tuple[str, str]], per_class: int, seed: int):
    """Up to ``per_class`` training images of each of ``classes`` (seeded choice).

    ``sets`` maps ``"cifar10"``/``"cifar100"`` to torchvision datasets. Returns ``(images, labels,
    index)``: images (N, 3, 32, 32) float32 in [0, 1]; labels (N,) int64 position in ``classes``;
    index (N,) int64 row of each image in its CIFAR training set.
    """
    gen = rng(seed, STREAM_SOURCE)
    targets = {name: np.asarray(data.targets) for name, data in sets.items()}
    chunks, labels, rows = [], [], []
    for concept, (dataset, name) in enumerate(classes):
        pool = np.flatnonzero(targets[dataset] == sets[dataset].classes.index(name))
        pick = np.sort(gen.choice(pool, size=min(per_class, len(pool)), replace=False))
        chunks.append(sets[dataset].data[pick])  # (k, 32, 32, 3) uint8
        labels += [concept] * len(pick)
        rows.append(pick)
    images = torch.from_numpy(np.concatenate(chunks)).permute(0, 3, 1, 2).float().div_(255.0)
    return images.contiguous(), torch.tensor(labels, dtype=torch.long), torch.from_numpy(np.concatenate(rows))


# --- target: ESC-50 clips ----------------------------------------------------------------------------

def esc50_table(folder: Path) -> list[dict]:
    """Rows of ``meta/esc50.csv`` (filename, fold, target, category), checked against :data:`ESC50_CLASSES`."""
    with open(folder / "meta" / "esc50.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        target = int(row["target"])
        if not (0 <= target < len(ESC50_CLASSES) and ESC50_CLASSES[target] == row["category"]):
            raise ChecksumError(f"esc50: meta/esc50.csv gives category {row['category']!r} target {target}, "
                                f"which is not ESC-50's class list")
    return rows


def esc50_features(folder: Path, rows: list[dict], n_mels: int, max_frames: int, show: bool):
    """Log-mel spectrograms of the clips in ``rows`` → ``(x, lengths)``: (N, n_mels, max_frames), (N,).

    Not yet standardized. A missing or unreadable clip removes the extracted folder (it is damaged)
    and raises ``ChecksumError``; a clip that reads but cannot be featurized is a ``ValueError``
    naming it. Both name the clip.
    """
    feats = []
    with one_thread():  # thousands of small FFTs: threads only add overhead on a shared machine
        for row in progress_bar(rows, "esc50: log-mel", len(rows), show):
            try:
                wave_, rate = read_wav(folder / "audio" / row["filename"])
            except (OSError, ValueError) as err:
                shutil.rmtree(folder.parent, ignore_errors=True)
                raise ChecksumError(f"esc50: clip audio/{row['filename']} is missing or unreadable "
                                    f"({type(err).__name__}); removed the download") from None
            try:
                feats.append(log_mel(wave_, rate, n_mels, max_frames))
            except ValueError as err:
                raise ValueError(f"esc50: clip audio/{row['filename']}: {err}") from None
    return pad_features(feats, max_frames)


# --- the dataset ---------------------------------------------------------------------------------------

def build(cfg: dict, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> CrossModalDataset:
    """Download (first use) and assemble the dataset for a config from :func:`make_config`.

    Use ``registry.load("esc50", ...)`` to cache the result.
    """
    folders = _fetch_all(cache_dir, progress)
    sets = {name: open_cifar(name, folders[name]) for name in CIFAR_ARCHIVES}
    classes = source_classes(cfg["source_classes"])
    images, src_labels, src_rows = cifar_images(sets, classes, cfg["images_per_class"], cfg["seed"])
    rows = esc50_table(folders["esc50"])
    x, lengths = esc50_features(folders["esc50"], rows, cfg["n_mels"], cfg["max_frames"], progress)
    x, mean, std = standardize(x, lengths)
    n_src = len(classes)
    tgt_labels = torch.tensor([n_src + int(row["target"]) for row in rows], dtype=torch.long)

    concepts = [("cifar", name) for _, name in classes] + [("esc50", name) for name in ESC50_CLASSES]
    clusters, cluster_names = cluster_ids(concepts)
    audio = audio_split(cfg["seed"], cfg["n_meta_train_audio"], cfg["n_val_audio"])
    concept_of = {name: n_src + ESC50_CLASSES.index(name) for name in ESC50_CLASSES}
    splits = {"meta_train": list(range(n_src)) + [concept_of[c] for c in audio["meta_train"]],
              "val": [concept_of[c] for c in audio["val"]],
              "meta_test": [concept_of[c] for c in audio["meta_test"]]}
    n_unlabeled = int(torch.isin(tgt_labels, torch.tensor(splits["meta_train"])).sum())
    info = {
        "description": "CIFAR-10/100 photos (image) -> ESC-50 environmental sounds (audio), weak pairs only",
        "sample_rate": ESC50_RATE, "feature_rate": 16_000, "n_mels": cfg["n_mels"], "max_frames": cfg["max_frames"],
        "audio_mean": mean, "audio_std": std,
        "attribution": ("ESC-50 by Karol J. Piczak (2015), CC BY-NC 3.0; "
                        "CIFAR-10/100 by Alex Krizhevsky (2009)"),
        "esc50_commit": ESC50_COMMIT, "cluster_names": cluster_names, "audio_split": audio,
        "n_unlabeled_meta_train_clips": n_unlabeled,
        "esc50_files": [row["filename"] for row in rows],
        "esc50_folds": torch.tensor([int(row["fold"]) for row in rows], dtype=torch.long),
        "source_index": src_rows,  # row of each image in its CIFAR training set
        "config": cfg,
    }
    return CrossModalDataset(
        name="esc50", class_names=[f"{m}:{name}" for m, name in concepts],
        source=Modality("image", images, torch.ones(len(images), dtype=torch.long), src_labels),
        target=Modality("audio", x, lengths, tgt_labels),
        pairs=torch.zeros(0, 2, dtype=torch.long), clusters=torch.tensor(clusters, dtype=torch.long),
        splits=splits, eval_tasks=make_eval_tasks(splits["meta_test"], cfg["n_eval_tasks"], cfg["n_way"], cfg["seed"]),
        info=info)
