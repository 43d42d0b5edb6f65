"""*recipes*: a recipe's ingredient list (text, source) → a photo of the dish (image, target).

The full-data text → image benchmark of the poster's recipe table, built from **Yummly-28K**
(Min et al. 2016): 27,638 recipes crawled from Yummly, each with one food photo and a JSON record
(``ingredientLines``, ``attributes.cuisine``, ``attributes.course``, ...). It is downloaded on first use
(see *Download* below) or read from a folder you extracted yourself (``folder=...``).

* **source**: ``", ".join(ingredientLines)``, lowercased (as the authors' code does before BERT), as
  character ids (:func:`~magma_teach.data.base.char_ids`, ``max_chars`` = 400, longer lists are cut);
* **target**: the recipe's photo, RGB, shorter side resized to ``image_size`` (quick 32, full 64) and
  center-cropped to a square, float32 in [0, 1], shape (N, 3, image_size, image_size);
* **strong pairs**: recipe i's text with recipe i's photo (same index in both modalities);
* **splits** of the classes (seeded, :func:`~magma_teach.data.registry.split_concepts`): 2/3 meta-train,
  1/9 validation, 2/9 meta-test, and ``n_eval_tasks`` fixed 5-way tasks over the meta-test classes;
* at most ``per_class`` recipes per class (quick 20, full 40), a seeded choice.

What a class is (``label``):

* ``"authors"`` (default) — what the authors' code (peter-yh-wu/xmodal, ``preprocess_recipe.py``)
  actually does. The issue says "label = cuisine, as the authors' code builds it", but that code labels
  a recipe by its cuisines *and* courses together: ``"_".join(sorted(cuisine)) + "_" +
  "_".join(sorted(course))``, e.g. ``"Italian_Main Dishes"`` or ``"American_Italian_Appetizers_Side
  Dishes"`` (an empty list gives an empty part, e.g. ``"_Salads"``). Classes with fewer than
  ``min_per_class`` = 11 recipes are dropped (their ``count > max_shot = 10``). **Weak-pair clusters**:
  classes with the same cuisine part (``"Italian_Main Dishes"`` and ``"Italian_Desserts"``) share one.
* ``"cuisine"`` — the simpler reading of the issue: only recipes with exactly one cuisine, and the
  class is that cuisine (``"Italian"``); same ``min_per_class`` filter; every class is its own cluster.

Unlike the authors, the full ``ingredientLines`` text is not cut by a BERT tokenizer but by
``max_chars``, the photos are not ImageNet-normalised, and the splits are 2/3 / 1/9 / 2/9 rather than
their 70 % / 15 % / 15 % (their training code even re-reads it as 80 / 10 / 10). They also keep half of
each meta-train class's recipes for alignment pairs and the other half for classification; here
every recipe is in ``pairs`` and the training code decides what it uses.

Note that a class may hold as few as ``min_per_class`` recipes: 5-shot tasks with 10 queries per class
need ``min_per_class=15``.

**Download.** The authors fetch ``http://lherranz.org/local/datasets/yummly28k/Yummly28K.rar`` (a RAR
archive). No checksum of it, or of any file in it, has been published that we
could find, so ``YUMMLY_ARCHIVE_SHA256`` is ``None`` and :func:`download` refuses to fetch it
unverified. Either pin a checksum you checked yourself, ``archive_sha256="sha256:<hex>"`` (then the
archive is hash-checked by pooch like every other download), or download and extract it yourself and
pass ``folder="path/to/Yummly28K"`` (nothing is downloaded then). A RAR needs the Python package
``rarfile`` and one of the tools ``unrar``, ``unar``, ``7z`` or ``bsdtar``; a mirror
(``MAGMA_TEACH_MIRROR``) may serve a zip or tar repack under the same name instead — the format is
read from the file, not its name. Member names are checked before anything is extracted.
(A zip of the same data is linked from the ICT food-computing page,
``http://123.57.42.89/Dataset_ict/Yummly-66K-28K/Yummly28K.zip``, also without a checksum.)

The extracted layout is ``images27638/imgNNNNN.jpg`` + ``metadata27638/metaNNNNN.json`` (five-digit ids
1–27638), with or without a ``Yummly28K/`` folder above them; the folders renamed ``images`` /
``metadata`` (as the authors' script does) are found too.

``info``: ``texts`` (the lowercased ingredient text of every example), ``recipe_ids`` (``"00042"``),
``recipe_names``, ``label_mode``, ``cluster_names``, ``n_recipes`` / ``n_skipped`` (records read / left
out for a missing photo, no ingredients or unreadable JSON or photo).

Attribution: Yummly-28K (Min et al. 2016): W. Min, S. Jiang, J. Sang, H. Wang, X. Liu, L. Herranz,
"Being a Supercook: Joint Food Attributes and Multimodal Content Modeling for Recipe Retrieval and
Exploration", IEEE Transactions on Multimedia 19(5), 2017. Recipes and photos were crawled from Yummly;
the photos remain © their owners and are for research use only — do not redistribute the cache.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from magma_teach.data import download as dl
from magma_teach.data.cache import cache_lock
from magma_teach.data.base import CrossModalDataset, Modality, char_ids
from magma_teach.data.registry import STREAM_POOLS, make_eval_tasks, rng, split_concepts
from magma_teach.data.registry import make_config as _make_config
from magma_teach.utils import check_positive
from magma_teach.utils import progress as progress_bar

__all__ = ["DEFAULTS", "LABEL_MODES", "PRESETS", "build", "check_member_names", "download", "find_layout",
           "load_image", "make_config", "read_recipes", "recipe_label"]

DATASET = "recipes"
YUMMLY_BASE_URL = "http://lherranz.org/local/datasets/yummly28k"
YUMMLY_ARCHIVE = "Yummly28K.rar"  # the file name on the server (and in a mirror)
# No published checksum was found (see the module docstring): pin one with archive_sha256=...
YUMMLY_ARCHIVE_SHA256: str | None = None
EXTRACTED_NAME = "Yummly28K"  # <cache>/downloads/recipes/Yummly28K
RAR_MAGIC = b"Rar!\x1a\x07"  # RAR 4 continues with \x00, RAR 5 with \x01\x00
LABEL_MODES = ("authors", "cuisine")

DEFAULTS = {
    "version": 1,  # bump when building changes, so old cache files are not reused
    "label": "authors",  # "authors" (cuisine-set x course-set) or "cuisine" (single-cuisine recipes)
    "min_per_class": 11,  # the authors keep classes with more than max_shot = 10 recipes
    "per_class": 20,  # at most this many recipes per class (seeded choice); None = all
    "image_size": 32, "max_chars": 400,
    "n_way": 5, "n_eval_tasks": 8,
    "archive_sha256": None,  # "sha256:<hex>" you checked yourself; overrides YUMMLY_ARCHIVE_SHA256
    "folder": None,  # an already-extracted Yummly-28K folder: nothing is downloaded
}
PRESETS = {"quick": {"per_class": 20, "image_size": 32}, "full": {"per_class": 40, "image_size": 64}}


class ExtractToolError(dl.DownloadError):
    """The archive is fine but this machine cannot unpack RAR; it was kept for a manual extraction."""


# --- config -----------------------------------------------------------------------------------------

def make_config(preset: str = "quick", seed: int = 0, **overrides) -> dict:
    """The full build config for ``preset`` with ``overrides``, validated (ValueError names the field)."""
    if isinstance(overrides.get("folder"), os.PathLike):
        overrides["folder"] = os.fspath(overrides["folder"])  # the config must stay JSON (cache key)
    cfg = _make_config(DEFAULTS, PRESETS, preset, seed, overrides)
    if cfg["label"] not in LABEL_MODES:
        raise ValueError(f"label must be one of {LABEL_MODES}, got {cfg['label']!r}")
    for name in ("min_per_class", "image_size", "max_chars", "n_way", "n_eval_tasks"):
        check_positive(name, cfg[name], integer=True)
    if cfg["per_class"] is not None:
        check_positive("per_class", cfg["per_class"], integer=True)
    if min(cfg["min_per_class"], cfg["per_class"] or 2) < 2:
        raise ValueError("min_per_class and per_class must be at least 2 (one support and one query example)")
    if cfg["image_size"] < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {cfg['image_size']}")
    cfg["archive_sha256"] = _checked_hash(cfg["archive_sha256"])
    if cfg["folder"] is not None and not isinstance(cfg["folder"], str):
        raise ValueError(f"folder must be a path to an extracted Yummly-28K folder, got {cfg['folder']!r}")
    return cfg


def _checked_hash(value):
    """``None`` or ``"sha256:<64 hex>"`` / ``"md5:<32 hex>"`` (a bare 64-hex string means sha256)."""
    if value is None:
        return None
    algorithm, _, digest = str(value).lower().rpartition(":")
    algorithm = algorithm or "sha256"
    size = {"sha256": 64, "md5": 32}.get(algorithm)
    if size is None or len(digest) != size or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"archive_sha256 must look like 'sha256:<64 hex digits>', got {value!r}")
    return f"{algorithm}:{digest}"


# --- download and extraction ------------------------------------------------------------------------

def download(config: dict, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The extracted Yummly-28K folder: ``config["folder"]`` if set, else downloaded into the cache.

    The download is ``<cache>/downloads/recipes/Yummly28K`` (reused without network once there).
    Raises :class:`~magma_teach.data.download.DownloadError` (one line) when no checksum is pinned,
    when offline, or when the archive cannot be unpacked; :class:`~.download.ChecksumError` on
    wrong bytes and :class:`~.download.UnsafeArchiveError` on a member escaping the folder.
    """
    if config.get("folder"):
        folder = Path(config["folder"]).expanduser()
        find_layout(folder)  # fail now, with a clear message, if it is not Yummly-28K
        return folder
    known = config.get("archive_sha256") or YUMMLY_ARCHIVE_SHA256
    if known is None:
        raise dl.DownloadError(
            f"{DATASET}: no published checksum is pinned for Yummly-28K, so it is not fetched unverified; "
            f"pin the sha256 of a {YUMMLY_ARCHIVE} you checked (archive_sha256=, CLI --set archive_sha256=sha256:<hex>)"
            f" or read an extracted copy (folder=); {dl.offline_hint(DATASET)}")
    final = dl.downloads_dir(DATASET, cache_dir) / EXTRACTED_NAME
    if final.is_dir():  # only a complete extraction is ever renamed to this name
        return final
    with cache_lock(final.parent):  # a second process waits here, then finds the folder complete
        if final.is_dir():
            return final
        remote = dl.Remote(DATASET, YUMMLY_BASE_URL, YUMMLY_ARCHIVE, known_hash=known)
        archive = dl.fetch(remote, final.parent, progress)
        _extract_into(archive, final)
        archive.unlink(missing_ok=True)
    return final


def _extract_into(archive: Path, final: Path) -> None:
    """Unpack ``archive`` (zip, tar or RAR) into ``final`` via a staging folder; clean up on failure."""
    try:
        with dl.staging_folder(final) as staging:  # same atomic rename as download.fetch_folder
            _extract(archive, staging)
            find_layout(staging)  # a wrong archive must not become the cached folder
    except ExtractToolError:
        raise  # the verified archive stays for the user to extract by hand
    except dl.DownloadError:
        archive.unlink(missing_ok=True)
        raise
    except FileNotFoundError:
        archive.unlink(missing_ok=True)
        raise dl.ChecksumError(f"{DATASET}: {archive.name} has no metadata27638/ and images27638/ folders, "
                               f"so it is not Yummly-28K; removed it") from None
    except dl.UNREADABLE as err:
        archive.unlink(missing_ok=True)
        raise dl.ChecksumError(f"{DATASET}: {archive.name} is not a readable archive "
                               f"({type(err).__name__}); removed it") from None


def _extract(archive: Path, destination: Path) -> None:
    """Dispatch on the archive's format, read from its name *and* its first bytes (they must agree)."""
    if dl.archive_format(archive, DATASET) == "rar":
        _extract_rar(archive, destination)
    else:
        dl.safe_extract(archive, destination, DATASET)


def _extract_rar(archive: Path, destination: Path) -> None:
    """Extract a RAR with ``rarfile`` after its members passed the download rules; a missing tool keeps
    the archive."""
    manual = f"or extract {archive} yourself and pass folder=<the extracted folder>"
    try:
        import rarfile
    except ImportError:
        raise ExtractToolError(f"{DATASET}: {archive.name} is a RAR archive; extracting it needs the Python "
                               f"package rarfile (pip install rarfile) and unrar, unar, 7z or bsdtar; "
                               f"{manual}") from None
    try:
        with rarfile.RarFile(archive) as handle:  # reading the member list needs no external tool
            dl.refuse_unsafe_members([(m.filename, None if (m.is_file() or m.is_dir()) else "a link or device file")
                                      for m in handle.infolist()], archive.name, DATASET)
            rarfile.tool_setup()  # before writing anything: is there unrar, unar, 7z or bsdtar?
            handle.extractall(destination)
    except rarfile.RarCannotExec:
        raise ExtractToolError(f"{DATASET}: no RAR tool found to extract {archive.name} (install unrar, "
                               f"unar, 7z or bsdtar); {manual}") from None
    except rarfile.Error as err:  # damaged RAR, wrong CRC, a missing volume, ...
        raise dl.ChecksumError(f"{DATASET}: {archive.name} is not a readable RAR archive "
                               f"({type(err).__name__}); removed it") from None


def check_member_names(names: list[str], archive_name: str) -> None:
    """Raise :class:`~.download.UnsafeArchiveError` if a name is absolute or has a ``..`` part (the rule
    :mod:`~magma_teach.data.download` applies to zip and tar members)."""
    dl.refuse_unsafe_members([(name, None) for name in names], archive_name, DATASET)


def find_layout(root: Path) -> tuple[Path, Path]:
    """``(metadata folder, images folder)`` at ``root`` or up to two levels below it.

    Accepts ``metadata27638`` / ``images27638`` (as unpacked) and ``metadata`` / ``images`` (as the
    authors' script renames them); raises ``FileNotFoundError`` in one line otherwise.
    """
    root = Path(root)
    for pattern in ("metadata*", "*/metadata*", "*/*/metadata*"):
        for meta in sorted(root.glob(pattern)):
            images = sorted(p for p in meta.parent.glob("images*") if p.is_dir())
            if meta.is_dir() and images and next(meta.glob("meta*.json"), None) is not None:
                return meta, images[0]
    raise FileNotFoundError(f"{DATASET}: no metadata27638/ and images27638/ folders under {root}; "
                            f"expected an extracted Yummly-28K archive")


# --- reading recipes --------------------------------------------------------------------------------

def read_recipes(meta_dir: Path, image_dir: Path, progress: bool = False) -> tuple[list[dict], int]:
    """Every usable recipe, sorted by id, and the number of records skipped.

    A recipe is ``{"id": "00042", "name", "text", "cuisine": sorted list, "course": sorted list,
    "image": Path}``; records without ingredients, without a photo or with broken JSON are skipped.
    """
    files = sorted(meta_dir.glob("meta*.json"))
    recipes, skipped = [], 0
    for path in progress_bar(files, "recipes: reading metadata", len(files), progress):
        rid = path.stem[len("meta"):]
        image = image_dir / f"img{rid}.jpg"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            lines = record.get("ingredientLines") or []
            attributes = record.get("attributes") or {}
            recipe = {"id": rid, "name": str(record.get("name") or ""),
                      "text": ", ".join(str(line) for line in lines).lower(),
                      "cuisine": sorted(attributes.get("cuisine") or []),
                      "course": sorted(attributes.get("course") or []), "image": image}
        except (ValueError, AttributeError, TypeError):  # malformed record: leave it out, counted
            skipped += 1
            continue
        if not recipe["text"] or not image.is_file():
            skipped += 1
            continue
        recipes.append(recipe)
    return recipes, skipped


def recipe_label(recipe: dict, mode: str) -> str | None:
    """The class name of a recipe, or ``None`` if it has no class in this ``mode``.

    ``"authors"``: ``"_".join(sorted cuisines) + "_" + "_".join(sorted courses)`` (xmodal's rule);
    ``"cuisine"``: the cuisine of a recipe with exactly one, else ``None``.
    """
    if mode == "authors":
        return "_".join(recipe["cuisine"]) + "_" + "_".join(recipe["course"])
    return recipe["cuisine"][0] if len(recipe["cuisine"]) == 1 else None


def load_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """A photo as float32 (3, size, size) in [0, 1]: shorter side resized to ``size``, center crop."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale (still >= size), much faster
        square = ImageOps.fit(img.convert("RGB"), (size, size), method=Image.Resampling.BICUBIC)
    return np.asarray(square, dtype=np.float32).transpose(2, 0, 1) / 255.0


# --- building ---------------------------------------------------------------------------------------

def _classes(recipes: list[dict], cfg: dict) -> dict[str, list[dict]]:
    """Class name → its recipes (by id), keeping classes with at least ``min_per_class`` recipes."""
    by_class = defaultdict(list)
    for recipe in recipes:
        name = recipe_label(recipe, cfg["label"])
        if name is not None:
            by_class[name].append(recipe)
    return {name: rs for name, rs in sorted(by_class.items()) if len(rs) >= cfg["min_per_class"]}


def _pick_and_decode(by_class: dict[str, list[dict]], cfg: dict, progress: bool):
    """Per class, up to ``per_class`` recipes in seeded order whose photo decodes.

    Unreadable photos are replaced by the next recipe of the class; a class left with fewer than
    ``min_per_class`` readable photos is dropped. Returns (class → [(recipe, image)]), skipped count.
    """
    gen = rng(cfg["seed"], STREAM_POOLS)
    cap, size = cfg["per_class"] or float("inf"), cfg["image_size"]
    chosen, skipped = {}, 0
    for name, rs in progress_bar(list(by_class.items()), "recipes: decoding photos", len(by_class), progress):
        kept = []
        for i in gen.permutation(len(rs)).tolist():
            if len(kept) >= cap:
                break
            try:
                kept.append((rs[i], load_image(rs[i]["image"], size)))
            except (OSError, ValueError):  # truncated or not an image: take another recipe
                skipped += 1
        if len(kept) >= cfg["min_per_class"]:
            chosen[name] = sorted(kept, key=lambda pair: pair[0]["id"])
    return chosen, skipped


def _cluster_key(recipe: dict, mode: str) -> str:
    """Weak-pair cluster: the cuisine part of the label (authors) or the class itself (cuisine)."""
    return "_".join(recipe["cuisine"]) if mode == "authors" else recipe_label(recipe, mode)


def build(cfg: dict, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> CrossModalDataset:
    """Read (downloading first if needed) Yummly-28K and build the benchmark for a :func:`make_config`
    config. Use ``registry.load("recipes", ...)`` to cache the result."""
    meta_dir, image_dir = find_layout(download(cfg, cache_dir, progress))
    recipes, skipped = read_recipes(meta_dir, image_dir, progress)
    chosen, bad_photos = _pick_and_decode(_classes(recipes, cfg), cfg, progress)
    names = sorted(chosen)
    splits = split_concepts(len(names), cfg["seed"], cfg["n_way"],
                            field=f"classes with at least min_per_class={cfg['min_per_class']} recipes")
    rows = [(c, recipe, image) for c, name in enumerate(names) for recipe, image in chosen[name]]
    texts = [recipe["text"] for _, recipe, _ in rows]
    ids = [char_ids(t, cfg["max_chars"]) for t in texts]
    y = torch.tensor([c for c, _, _ in rows], dtype=torch.long)
    images = torch.from_numpy(np.stack([image for _, _, image in rows]))
    cluster_of = [_cluster_key(chosen[name][0][0], cfg["label"]) for name in names]
    cluster_names = sorted(set(cluster_of))
    idx = torch.arange(len(rows))
    info = {
        "description": "Yummly-28K ingredient lists (text) -> photos of the dishes (image)",
        "attribution": "Yummly-28K (Min et al. 2016/2017, IEEE TMM); photos (c) their owners, research use only",
        "label_mode": cfg["label"], "texts": texts,
        "recipe_ids": [recipe["id"] for _, recipe, _ in rows],
        "recipe_names": [recipe["name"] for _, recipe, _ in rows],
        "cluster_names": [c or "(no cuisine)" for c in cluster_names],
        "n_recipes": len(recipes) + skipped, "n_skipped": skipped + bad_photos,
        "image_size": cfg["image_size"], "config": cfg,
    }
    return CrossModalDataset(
        name=DATASET, class_names=names,
        source=Modality("text", torch.tensor([i for i, _ in ids], dtype=torch.long),
                        torch.tensor([n for _, n in ids], dtype=torch.long), y),
        target=Modality("image", images, torch.ones(len(rows)), y.clone()),
        pairs=torch.stack([idx, idx], dim=1),
        clusters=torch.tensor([cluster_names.index(k) for k in cluster_of], dtype=torch.long),
        splits=splits, eval_tasks=make_eval_tasks(splits["meta_test"], cfg["n_eval_tasks"], cfg["n_way"],
                                                  cfg["seed"]),
        info=info)
