"""Look at a shared space: embed both modalities of a few concepts, project them to 2-D, measure and draw.

The book's UMAP chapter asks one question of a trained model: *do the source and target examples of a
concept land in the same place of the shared space?* Three steps answer it:

1. :func:`embed_concepts` — pick examples of the chosen concepts from each modality (seeded) and run
   them through the model's two encoders. Embeddings are L2-normalised, because the alignment loss
   and the classifier φ only look at directions (cosines).
2. :func:`neighbour_stats` — numbers for what a picture suggests, computed in the full shared space
   (not in 2-D, where UMAP may distort distances): how often the nearest *source* example of a target
   example shows the same concept, and how mixed the modalities are among each point's neighbours.
3. :func:`project` + :func:`plot_projection` — UMAP (umap-learn) down to 2-D, deterministic for a
   given seed, and a scatter plot coloured by concept with one marker per modality.

umap-learn is an optional dependency (``pip install "magma_teach[book]"``); it is imported only when
:func:`project` runs with ``method="umap"``. Its first call in a process compiles numba code (seconds
to a minute): :func:`project` points numba's cache at ``<cache root>/numba`` (the package's cache
folder: ``$MAGMA_TEACH_CACHE``, else ``~/.cache/magma_teach``) unless you set ``NUMBA_CACHE_DIR``
yourself, and picks numba's ``workqueue`` threading layer: numba's default OpenMP layer brings a
second OpenMP runtime into the process (torch ships its own libgomp), and PyTorch training after a
projection was once measured about 35× slower with it. (On a busy 2-core machine the benchmark
below saw no difference either way; the workqueue layer costs nothing, since a seeded UMAP is
single-threaded.) ``method="pca"`` is a fast, dependency-free alternative for quick looks and tests.

Threads: the workqueue layer is not thread-safe. Two threads inside numba's parallel code at once
make it abort the whole process (SIGABRT, "Concurrent access has been detected"). :func:`project`
therefore runs UMAP under a module-level lock: calls from several threads are safe, and run one
after another (a seeded UMAP is single-threaded anyway, so nothing is lost). The thread-safe
alternative, numba's TBB layer, needs the ``tbb`` package, which this package does not require.
``benchmarks/projection_threads.py`` measures both properties: 4 threads project without a crash,
and torch matrix products in the same process keep their speed after a projection.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from magma_teach import viz
from magma_teach.data.base import CrossModalDataset, check_concepts
from magma_teach.evaluate import top_share
from magma_teach.utils import check_positive

__all__ = ["Embedding", "embed_concepts", "neighbour_stats", "project", "plot_projection", "MARKERS",
           "concept_colors"]

MODALITIES = ("source", "target")
# numba's workqueue layer aborts the process on concurrent use: one UMAP at a time per process.
_NUMBA_LOCK = threading.Lock()
_numba_cache_set: str | None = None  # the NUMBA_CACHE_DIR value this module set, if any
# The book's modality markers (viz.MODALITY): a disc for the source, an X for the target. Their
# outlines differ even at a few pixels and in grayscale, unlike a disc and a triangle.
MARKERS = {part: viz.MODALITY[part]["marker"] for part in MODALITIES}


@dataclass
class Embedding:
    """Points of the shared space: one row per example, of either modality.

    ``z`` (n, dim) unit-length embeddings; ``concept`` (n,) concept id; ``modality`` (n,) ``"source"``
    or ``"target"``; ``index`` (n,) row of the example in its modality; ``names`` the dataset's class
    names (indexed by concept id).
    """

    z: np.ndarray
    concept: np.ndarray
    modality: np.ndarray
    index: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.z)

    def subset(self, keep) -> "Embedding":
        """The points selected by a boolean mask or index array."""
        return Embedding(self.z[keep], self.concept[keep], self.modality[keep], self.index[keep], self.names)

    def of_concepts(self, concepts: Sequence[int]) -> "Embedding":
        """Only the points of ``concepts``."""
        return self.subset(np.isin(self.concept, list(concepts)))


def _pick(modality, concept: int, per_concept: int | None, generator: torch.Generator) -> torch.Tensor:
    pool = modality.indices_of(concept).cpu()
    if per_concept is not None and per_concept < len(pool):
        pool = pool[torch.randperm(len(pool), generator=generator)[:per_concept]].sort().values
    return pool


@torch.no_grad()
def embed_concepts(model, data: CrossModalDataset, concepts: Sequence[int], per_concept: int | None = 30,
                   seed: int = 0, batch_size: int = 512) -> Embedding:
    """Embed up to ``per_concept`` examples of each concept, from both modalities, with ``model``.

    Args:
        model: a :class:`~magma_teach.magma.CrossModalModel` (anything with ``source`` and ``target``
            encoders called as ``encoder(x, lengths) -> (B, dim)``).
        data: the dataset the examples come from.
        concepts: distinct concept ids to show, e.g. ``data.splits["meta_test"]`` for concepts no
            training saw (a repeated id is a ``ValueError``: its points would be counted twice).
        per_concept: examples per concept *and* modality, drawn with ``seed``; ``None`` takes all.
        seed: the same seed picks the same examples, whichever model embeds them — so "before" and
            "after" pictures show the same points.
        batch_size: examples per encoder call.

    Returns:
        An :class:`Embedding` with source points first, then target points, each ordered by concept.
    """
    concepts = [int(c) for c in concepts]
    if not concepts:
        raise ValueError("concepts must name at least one concept")
    bad = [c for c in concepts if not 0 <= c < data.num_classes]
    if bad:
        raise ValueError(f"concepts must be ids in [0, {data.num_classes}), got {bad[:5]}")
    check_concepts(concepts)  # a repeated concept would embed its examples twice: each its own neighbour
    if per_concept is not None:
        check_positive("per_concept", per_concept, integer=True)
    was_training = model.training
    model.eval()
    zs, concept_ids, modalities, indices = [], [], [], []
    for part in MODALITIES:
        modality = getattr(data, part)
        generator = torch.Generator().manual_seed(seed)  # same draw for every model
        picked = [_pick(modality, c, per_concept, generator) for c in concepts]
        rows = torch.cat(picked)
        device = modality.labels.device
        chunks = [getattr(model, part)(*modality.batch(rows[i:i + batch_size].to(device)))
                  for i in range(0, len(rows), batch_size)]
        zs.append(F.normalize(torch.cat(chunks).float(), dim=-1).cpu().numpy())
        concept_ids.append(np.repeat(concepts, [len(p) for p in picked]))
        modalities.append(np.full(len(rows), part))
        indices.append(rows.numpy())
    model.train(was_training)
    return Embedding(np.concatenate(zs), np.concatenate(concept_ids).astype(np.int64),
                     np.concatenate(modalities), np.concatenate(indices).astype(np.int64),
                     list(data.class_names))


def neighbour_stats(emb: Embedding, k: int = 10) -> dict[str, float]:
    """How well the two modalities of each concept meet in the (full-dimensional) shared space.

    Returns, in percent:

    * ``"nearest source, same concept"`` — of all target points, the share whose nearest *source*
      point (by cosine) shows the same concept: concept-level cross-modal retrieval. Chance is about
      100 / (number of concepts).
    * ``"cross-modal neighbours"`` — the mean share of the other modality among each point's ``k``
      nearest neighbours (either modality, the point itself excluded). 0 means the modalities live in
      separate regions; with equally many points of each it is about 50 when they are fully mixed.
    * ``"same-concept neighbours"`` — the mean share of the point's own concept among those ``k``.
    * ``"target only: same-concept neighbours"`` — the same among target points alone: how well the
      target encoder separates concepts by itself, whatever the source does.
    """
    check_positive("k", k, integer=True)
    is_source = emb.modality == "source"
    if not is_source.any() or is_source.all():
        raise ValueError("emb must hold points of both modalities")
    if k >= len(emb):
        raise ValueError(f"k must be smaller than the number of points ({len(emb)}), got {k}")
    sim = emb.z @ emb.z.T
    target_rows = np.flatnonzero(~is_source)
    source_rows = np.flatnonzero(is_source)
    # Neighbours by top_share: points tied at the k-th similarity share the remaining places, so a tie
    # never counts as a lucky hit (nor a miss) the way an index-ordered argsort would.
    same = top_share(sim[np.ix_(target_rows, source_rows)],
                     emb.concept[source_rows][None, :] == emb.concept[target_rows][:, None])
    np.fill_diagonal(sim, -np.inf)  # a point is not its own neighbour
    cross = top_share(sim, emb.modality[None, :] != emb.modality[:, None], k)
    same_concept = top_share(sim, emb.concept[None, :] == emb.concept[:, None], k)
    k_target = min(k, len(target_rows) - 1)
    target_same = np.zeros(1)
    if k_target > 0:
        concept = emb.concept[target_rows]
        target_same = top_share(sim[np.ix_(target_rows, target_rows)], concept[None, :] == concept[:, None],
                                k_target)
    return {"nearest source, same concept": float(100 * same.mean()),
            "cross-modal neighbours": float(100 * cross.mean()),
            "same-concept neighbours": float(100 * same_concept.mean()),
            "target only: same-concept neighbours": float(100 * target_same.mean())}


def numba_cache_dir() -> str:
    """The folder numba caches compiled code in: ``$NUMBA_CACHE_DIR`` if you set it, else
    ``<cache root>/numba`` with the package's cache root (``$MAGMA_TEACH_CACHE``, else
    ``~/.cache/magma_teach``; see :func:`magma_teach.data.cache.cache_root`)."""
    user = os.environ.get("NUMBA_CACHE_DIR")
    if user and user != _numba_cache_set:
        return user
    from magma_teach.data.cache import cache_root

    return str(cache_root() / "numba")


def _configure_numba() -> None:
    """Settings for numba, which umap-learn compiles with; applied before its first parallel call.

    * The cache folder (:func:`numba_cache_dir`), so compiled functions that can be cached are, beside
      the package's other cached files; a ``NUMBA_CACHE_DIR`` you set yourself is left alone. numba
      fixes a function's cache folder when umap-learn is imported, so the folder in force at the
      first UMAP projection of a process is the one it uses.
    * The ``workqueue`` threading layer (unless ``NUMBA_THREADING_LAYER`` is set): numba's default
      OpenMP layer shares the OpenMP runtime with PyTorch, and once its thread pool exists PyTorch
      training in the same process can become tens of times slower. The workqueue layer has no such
      interaction; UMAP with a fixed seed runs single-threaded anyway. It is not thread-safe:
      :func:`project` calls this, and UMAP, under ``_NUMBA_LOCK``.
    """
    global _numba_cache_set
    folder = numba_cache_dir()
    if folder != os.environ.get("NUMBA_CACHE_DIR"):
        os.environ["NUMBA_CACHE_DIR"] = _numba_cache_set = folder  # read when numba is first imported
        import sys

        if "numba" in sys.modules:  # imported already: its config holds the old value
            sys.modules["numba"].config.CACHE_DIR = folder
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return
    os.environ["NUMBA_THREADING_LAYER"] = "workqueue"  # read when numba is first imported
    try:
        import numba
        from numba.np.ufunc import parallel
    except ImportError:  # pragma: no cover - umap-learn (and numba) missing: project() says so
        return
    if not parallel._is_initialized:  # numba imported earlier: set it before the thread pool starts
        numba.config.THREADING_LAYER = "workqueue"


def _exact_knn(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (each point first, itself at distance 0) by Euclidean distance."""
    z = z.astype(np.float64)
    sq = (z ** 2).sum(1)
    dist = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0, None))
    np.fill_diagonal(dist, -1.0)  # put each point first whatever the ties
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    knn_dist = np.take_along_axis(dist, order, axis=1)
    knn_dist[:, 0] = 0.0
    return order.astype(np.int32), knn_dist.astype(np.float32)


def project(z, method: str = "umap", seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.3) -> np.ndarray:
    """Project points (n, dim) to 2-D: (n, 2) float array, the same for the same inputs and seed.

    ``method="umap"`` runs umap-learn on the points as given (pass unit-length embeddings, as
    :func:`embed_concepts` makes, so that Euclidean neighbours are cosine neighbours). The exact
    nearest-neighbour graph is computed here with NumPy and handed to UMAP (``precomputed_knn``),
    which is exact for the few hundred points of a chapter and skips compiling UMAP's own search.
    A fixed ``random_state`` makes UMAP single-threaded and deterministic. ``method="pca"``: the first
    two principal components (signs fixed), instant and without umap-learn.
    """
    z = np.asarray(z.z if isinstance(z, Embedding) else z, dtype=np.float32)
    if z.ndim != 2 or len(z) < 3:
        raise ValueError(f"z must be (n, dim) with n >= 3 points, got shape {z.shape}")
    if method == "pca":
        centred = z.astype(np.float64) - z.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        axes = vt[:2] * np.sign(vt[:2, [0]] + (vt[:2, [0]] == 0))  # a deterministic sign per axis
        out = centred @ axes.T
        if out.shape[1] < 2:
            out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
        return out.astype(np.float32)
    if method != "umap":
        raise ValueError(f"method must be 'umap' or 'pca', got {method!r}")
    check_positive("n_neighbors", n_neighbors, integer=True)
    n_neighbors = min(n_neighbors, len(z) - 1)
    if n_neighbors < 2:
        raise ValueError(f"UMAP needs at least 3 points, got {len(z)}")
    knn = _exact_knn(z, n_neighbors)
    with _NUMBA_LOCK:  # see the module docstring: concurrent numba calls abort the process
        _configure_numba()
        try:
            import umap
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("project(method='umap') needs umap-learn: pip install umap-learn "
                              "(or pip install 'magma_teach[book]'); method='pca' works without it") from err
        reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed, init="spectral",
                            precomputed_knn=knn, n_jobs=1)
        with warnings.catch_warnings():
            # "n_jobs overridden by random_state" and similar notices: determinism is what we ask for.
            # (catch_warnings is process-wide state too: one more reason for the lock.)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"umap(\.|$)")
            warnings.filterwarnings("ignore", message=r".*(n_jobs|random_state|precomputed_knn).*")
            return reducer.fit_transform(z).astype(np.float32)


def concept_colors(concepts: Sequence[int]) -> dict[int, str]:
    """One colour per concept: the book's Okabe-Ito palette, then matplotlib's tab20 beyond 7 concepts."""
    import matplotlib as mpl

    concepts = list(dict.fromkeys(int(c) for c in concepts))
    extra = [mpl.colors.to_hex(c) for c in mpl.colormaps["tab20"].colors]
    palette = viz.COLORS + extra
    return {c: palette[i % len(palette)] for i, c in enumerate(concepts)}


def plot_projection(ax, coords: np.ndarray, emb: Embedding, title: str, legend: bool | str = True,
                    colors: dict[int, str] | None = None, size: float = 30, axis_name: str = "UMAP",
                    **legend_kwargs):
    """Scatter 2-D ``coords`` of ``emb``: colour = concept, marker = modality (:data:`MARKERS`).

    The modality markers are the book's (:data:`magma_teach.viz.MODALITY`): a disc for the source,
    an X for the target, so the two stay apart in grayscale and at small sizes. Draws the title,
    axis labels (UMAP axes have no units; ``axis_name`` names them, ``"PCA"`` for
    ``project(method="pca")``) and a legend with one entry per concept plus one per modality,
    outside the data (:func:`magma_teach.viz.legend_outside`): ``legend=True`` puts it right of
    the axes, or below the figure when it would take more than ``viz.RIGHT_LEGEND_MAX`` of the
    width; ``"right"`` or ``"below"`` choose; ``False`` draws none (e.g. on all but the last
    panel of a row). ``legend_kwargs`` go to the legend (``ncol`` for one below); ``loc`` /
    ``bbox_to_anchor`` place it yourself, as :func:`magma_teach.viz.finish` allows. Returns ``ax``.

    Raises ``ValueError`` when ``coords`` is not ``(len(emb), 2)`` or ``legend`` is none of
    ``True, False, "right", "below"``.
    """
    from matplotlib.lines import Line2D

    coords = np.asarray(coords)
    if coords.shape != (len(emb), 2):
        raise ValueError(f"coords must have shape ({len(emb)}, 2), got {coords.shape}")
    if legend not in (True, False, "right", "below"):
        raise ValueError(f"legend must be True, False, 'right' or 'below', got {legend!r}")
    concepts = list(dict.fromkeys(emb.concept.tolist()))
    colors = colors or concept_colors(concepts)
    for part in MODALITIES:
        for c in concepts:
            keep = (emb.modality == part) & (emb.concept == c)
            if keep.any():
                # A thin white edge keeps overlapping discs apart; an X has no inside to outline.
                ax.scatter(coords[keep, 0], coords[keep, 1], s=size, marker=MARKERS[part], color=colors[c],
                           alpha=0.8, linewidths=0.5, edgecolors="white" if part == "source" else "none")
    viz.finish(ax, title, f"{axis_name} dimension 1 (no units)", f"{axis_name} dimension 2 (no units)",
               legend=False)
    ax.set_xticks([])
    ax.set_yticks([])
    if legend:
        handles = [Line2D([], [], ls="", marker="s", color=colors[c], label=emb.names[c]) for c in concepts]
        handles += [Line2D([], [], ls="", marker=MARKERS[p], color="0.3", markersize=8, label=f"{p} modality")
                    for p in MODALITIES]
        _legend(ax, handles, legend, legend_kwargs)
    return ax


def _legend(ax, handles, where: bool | str, kwargs: dict):
    """The legend of :func:`plot_projection`, placed as ``where`` says (see there)."""
    labels = [h.get_label() for h in handles]
    if "loc" in kwargs or "bbox_to_anchor" in kwargs:  # the caller places it
        return ax.legend(handles, labels, **kwargs)
    return viz.legend_outside(ax, "auto" if where is True else where, handles=handles, labels=labels, **kwargs)
