"""Fast checks of the shared-space pictures (magma_teach.projection) and their widget (magma_teach.widgets).

Most tests use ``method="pca"`` (instant); one module-scoped UMAP run checks shape and determinism
(umap-learn compiles numba code on its first call in a process, which takes a while once).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from magma_teach.data.conceptworld import concept_world  # noqa: E402
from magma_teach.magma import CrossModalModel  # noqa: E402
from magma_teach.projection import (Embedding, concept_colors, embed_concepts, neighbour_stats,  # noqa: E402
                                    plot_projection, project)



@pytest.fixture(scope="module")
def world():
    return concept_world(samples_per_concept=12, seed=3)


@pytest.fixture(scope="module")
def model(world):
    torch.manual_seed(0)
    return CrossModalModel.for_dataset(world, dim=8)


def test_embed_shapes_and_order(world, model):
    concepts = world.splits["meta_test"][:3]
    emb = embed_concepts(model, world, concepts, per_concept=5, seed=0)
    assert emb.z.shape == (2 * 3 * 5, 8)
    np.testing.assert_allclose(np.linalg.norm(emb.z, axis=1), 1.0, rtol=1e-5)
    assert list(emb.modality[:15]) == ["source"] * 15 and list(emb.modality[15:]) == ["target"] * 15
    assert sorted(set(emb.concept.tolist())) == sorted(concepts)
    # every picked row really shows its concept
    for part in ("source", "target"):
        rows = emb.modality == part
        labels = getattr(world, part).labels[torch.as_tensor(emb.index[rows])].numpy()
        np.testing.assert_array_equal(labels, emb.concept[rows])


def test_embed_all_examples_and_same_points_for_every_model(world, model):
    concepts = world.splits["val"][:2]
    everything = embed_concepts(model, world, concepts, per_concept=None)
    assert len(everything) == 2 * 2 * 12
    other = CrossModalModel.for_dataset(world, dim=8)
    a = embed_concepts(model, world, concepts, per_concept=4, seed=7)
    b = embed_concepts(other, world, concepts, per_concept=4, seed=7)
    np.testing.assert_array_equal(a.index, b.index)  # same examples, whichever model
    assert not np.allclose(a.z, b.z)


def test_embed_rejects_bad_concepts(world, model):
    with pytest.raises(ValueError, match="concepts must"):
        embed_concepts(model, world, [])
    with pytest.raises(ValueError, match=r"ids in \[0, 40\)"):
        embed_concepts(model, world, [0, 99])
    with pytest.raises(ValueError, match="per_concept"):
        embed_concepts(model, world, [0, 1], per_concept=0)
    with pytest.raises(ValueError, match=r"distinct concepts .*\[1\] more than once"):
        embed_concepts(model, world, [0, 1, 1])


def _toy(shift: float) -> Embedding:
    """Two concepts on a circle; target points are the source points rotated by ``shift`` radians."""
    angles = np.array([0.0, 0.1, 0.2, 3.0, 3.1, 3.2])
    z_s = np.stack([np.cos(angles), np.sin(angles)], 1)
    z_t = np.stack([np.cos(angles + shift), np.sin(angles + shift)], 1)
    concept = np.array([0, 0, 0, 1, 1, 1] * 2)
    modality = np.array(["source"] * 6 + ["target"] * 6)
    return Embedding(np.concatenate([z_s, z_t]), concept, modality, np.arange(12) % 6, ["a", "b"])


def test_neighbour_stats_on_known_geometry():
    aligned = neighbour_stats(_toy(0.0), k=3)
    assert aligned["nearest source, same concept"] == 100.0
    assert aligned["cross-modal neighbours"] > 30
    # among the 6 target points, each one's 3 nearest targets: its 2 concept mates and 1 other
    assert aligned["target only: same-concept neighbours"] == pytest.approx(200 / 3)
    swapped = neighbour_stats(_toy(np.pi), k=3)  # every target lands on the other concept's source
    assert swapped["nearest source, same concept"] == 0.0
    with pytest.raises(ValueError, match="both modalities"):
        neighbour_stats(_toy(0.0).subset(np.arange(6)))
    with pytest.raises(ValueError, match="k must be smaller"):
        neighbour_stats(_toy(0.0), k=12)


def test_pca_projection_is_deterministic(world, model):
    emb = embed_concepts(model, world, world.splits["meta_test"][:3], per_concept=6)
    first, second = project(emb.z, method="pca"), project(emb, method="pca")
    assert first.shape == (len(emb), 2) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)
    with pytest.raises(ValueError, match="method"):
        project(emb.z, method="tsne")
    with pytest.raises(ValueError, match="n >= 3"):
        project(emb.z[:2], method="pca")


@pytest.fixture(scope="module")
def umap_pair(world, model):
    pytest.importorskip("umap")
    emb = embed_concepts(model, world, world.splits["meta_test"][:3], per_concept=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # project() must keep umap/numba notices to itself
        first = project(emb.z, seed=1, n_neighbors=10)
    return emb, first, project(emb.z, seed=1, n_neighbors=10)


def test_umap_shape_and_determinism(umap_pair):
    emb, first, second = umap_pair
    assert first.shape == (len(emb), 2)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)


def test_plot_projection_draws_labelled_figure(world, model):
    emb = embed_concepts(model, world, world.splits["meta_test"][:3], per_concept=4)
    fig, ax = plt.subplots()
    plot_projection(ax, project(emb.z, method="pca"), emb, "a title", axis_name="PCA")
    assert ax.get_title() == "a title" and "PCA" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-2:] == ["source modality", "target modality"] and len(labels) == 5
    with pytest.raises(ValueError, match="coords must have shape"):
        plot_projection(ax, np.zeros((3, 2)), emb, "t")
    with pytest.raises(ValueError, match="legend must be True, False, 'right' or 'below', got 'inside'"):
        plot_projection(ax, project(emb.z, method="pca"), emb, "t", legend="inside")
    plt.close(fig)
    colors = concept_colors(range(9))
    assert len(set(colors.values())) == 9


def _marker_path(marker):
    """The vertices scatter() draws for ``marker`` (its path in marker units)."""
    from matplotlib.markers import MarkerStyle

    style = MarkerStyle(marker)
    return style.get_path().transformed(style.get_transform()).vertices


def test_plot_projection_uses_the_book_modality_markers(world, model):
    from magma_teach import viz
    from magma_teach.projection import MARKERS

    emb = embed_concepts(model, world, world.splits["meta_test"][:2], per_concept=3)
    fig, ax = plt.subplots()
    plot_projection(ax, project(emb.z, method="pca"), emb, "markers", axis_name="PCA")
    assert MARKERS == {p: viz.MODALITY[p]["marker"] for p in ("source", "target")}
    assert MARKERS["source"] != MARKERS["target"]
    # no disc-and-triangle pair: a triangle's outline is lost at a few pixels beside a disc
    assert not {MARKERS["source"], MARKERS["target"]} & {"^", "v", "<", ">", "1", "2", "3", "4"}
    # 2 concepts x 2 modalities: source collections first, then target, each with its marker's shape
    drawn = [c.get_paths()[0].vertices for c in ax.collections]
    assert len(drawn) == 4
    for vertices, part in zip(drawn, ["source"] * 2 + ["target"] * 2):
        np.testing.assert_allclose(vertices, _marker_path(MARKERS[part]))
    entries = {h.get_label(): h.get_marker() for h in ax.get_legend().legend_handles}
    assert entries["source modality"] == MARKERS["source"] and entries["target modality"] == MARKERS["target"]
    plt.close(fig)


def test_plot_projection_keeps_the_legend_off_the_data(world, model):
    from magma_teach import viz

    emb = embed_concepts(model, world, world.splits["meta_test"][:3], per_concept=3)
    coords = project(emb.z, method="pca")
    fig, ax = plt.subplots(figsize=(viz.PAGE_WIDTH, 4), layout="constrained")
    plot_projection(ax, coords, emb, "right", axis_name="PCA")
    fig.canvas.draw()
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= axes.x1  # right of the axes, not on the points
    assert legend.x1 <= fig.bbox.x1 + 1  # and inside the figure
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(viz.PAGE_WIDTH, 4), layout="constrained")
    plot_projection(ax, coords, emb, "below", legend="below", axis_name="PCA")
    fig.canvas.draw()
    assert ax.get_legend() is None and len(fig.legends) == 1
    assert fig.legends[0].get_window_extent().y1 <= ax.get_window_extent().y0  # under the axes
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2)
    plot_projection(left, coords, emb, "no legend", legend=False, axis_name="PCA")
    assert left.get_legend() is None and not fig.legends
    plt.close(fig)


def test_widget_builds_and_redraws_without_display(world, model):
    pytest.importorskip("ipywidgets")
    from magma_teach.widgets import umap_explorer

    other = CrossModalModel.for_dataset(world, dim=8)
    explorer = umap_explorer({"before": other, "after": model}, world, per_concept=4, method="pca")
    offered = world.splits["meta_test"]
    assert [value for _, value in explorer.concepts.options] == offered
    assert explorer.state.value == "after"
    assert "nearest source" in explorer.status.value
    explorer.concepts.value = tuple(offered[:2])
    explorer.state.value = "before"  # observers redraw; nothing is displayed outside a notebook
    assert "<b>before</b>" in explorer.status.value
    fig = explorer.redraw()
    assert fig is not None and fig.axes[0].get_title().startswith("Shared space, before")
    from magma_teach import viz

    # page-wide, constrained layout (not tight_layout), legend beside the data
    assert fig.get_figwidth() <= viz.PAGE_WIDTH
    assert type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"
    fig.canvas.draw()
    assert fig.axes[0].get_legend().get_window_extent().x0 >= fig.axes[0].get_window_extent().x1
    plt.close(fig)
    explorer.concepts.value = (offered[0],)
    assert explorer.redraw() is None and "at least two" in explorer.status.value
    # what a notebook stores as the widget's text fits the page (88 characters)
    assert len(repr(explorer.ui)) <= 88 and "\n" not in repr(explorer.ui)
    with pytest.raises(ValueError, match="not offered"):
        umap_explorer({"m": model}, world, selected=[world.splits["meta_train"][0]], method="pca")


def test_missing_ipywidgets_gives_install_hint(monkeypatch):
    import builtins

    from magma_teach import widgets

    real_import = builtins.__import__

    def no_ipywidgets(name, *args, **kwargs):
        if name == "ipywidgets":
            raise ImportError("no ipywidgets here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ipywidgets)
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        widgets.require_ipywidgets()


def test_numba_settings_respect_the_user(monkeypatch):
    pytest.importorskip("numba")
    from magma_teach import projection

    monkeypatch.delenv("NUMBA_THREADING_LAYER", raising=False)
    projection._configure_numba()
    assert os.environ["NUMBA_THREADING_LAYER"] == "workqueue"  # keeps PyTorch fast after UMAP
    assert os.environ.get("NUMBA_CACHE_DIR")
    monkeypatch.setenv("NUMBA_THREADING_LAYER", "tbb")
    projection._configure_numba()
    assert os.environ["NUMBA_THREADING_LAYER"] == "tbb"  # a choice of the user is kept


def _run_python(code: str, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter: a crash (SIGABRT) fails the test instead of killing pytest."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_project_from_four_threads_neither_crashes_nor_changes_the_result():
    pytest.importorskip("umap")
    code = """
        import threading
        import numpy as np
        from magma_teach.projection import project

        z = np.random.default_rng(0).standard_normal((60, 8)).astype(np.float32)
        reference = project(z, seed=0, n_neighbors=8)
        results = [None] * 4
        def work(i):
            results[i] = project(z, seed=0, n_neighbors=8)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("same:", all(r is not None and np.array_equal(r, reference) for r in results))
    """
    done = _run_python(code, dict(os.environ))
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-800:]}"
    assert "same: True" in done.stdout


_CACHE_PROBE = """
    import os, pathlib, sys
    {before}
    from magma_teach import projection
    projection._configure_numba()
    import numba
    module = pathlib.Path(os.environ["PROBE_DIR"]) / "probe_module.py"
    module.write_text("import numba\\n@numba.njit(cache=True)\\ndef twice(x):\\n    return 2 * x\\n")
    sys.path.insert(0, str(module.parent))
    import probe_module
    assert probe_module.twice(21) == 42
    print("config:", numba.config.CACHE_DIR)
    print("files:", sorted(p.suffix for p in pathlib.Path(numba.config.CACHE_DIR).rglob("probe_module*")))
"""


@pytest.mark.parametrize("numba_first", [False, True], ids=["numba-imported-after", "numba-imported-before"])
def test_numba_cache_follows_the_package_cache_root(tmp_path, numba_first):
    pytest.importorskip("numba")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(MAGMA_TEACH_CACHE=str(tmp_path / "cache"), PROBE_DIR=str(tmp_path))
    done = _run_python(_CACHE_PROBE.format(before="import numba" if numba_first else ""), env)
    assert done.returncode == 0, done.stderr[-800:]
    assert f"config: {tmp_path / 'cache' / 'numba'}" in done.stdout
    assert ".nbi" in done.stdout and ".nbc" in done.stdout  # numba wrote its index and code there
    assert any((tmp_path / "cache" / "numba").rglob("probe_module*.nbi"))


def test_numba_cache_set_by_the_user_is_kept(tmp_path):
    pytest.importorskip("numba")
    env = {**os.environ, "MAGMA_TEACH_CACHE": str(tmp_path / "cache"), "NUMBA_CACHE_DIR": str(tmp_path / "mine"),
           "PROBE_DIR": str(tmp_path)}
    done = _run_python(_CACHE_PROBE.format(before=""), env)
    assert done.returncode == 0, done.stderr[-800:]
    assert f"config: {tmp_path / 'mine'}" in done.stdout
    assert any((tmp_path / "mine").rglob("probe_module*.nbi")) and not (tmp_path / "cache" / "numba").exists()


def test_numba_cache_default_is_under_the_home_cache(monkeypatch):
    from magma_teach import projection

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.delenv("MAGMA_TEACH_CACHE", raising=False)
    monkeypatch.setenv("HOME", "/home/someone")
    assert projection.numba_cache_dir() == os.path.join("/home/someone", ".cache", "magma_teach", "numba")
    monkeypatch.setenv("MAGMA_TEACH_CACHE", "/data/cache")
    assert projection.numba_cache_dir() == os.path.join("/data/cache", "numba")


def test_neighbour_stats_share_ties_instead_of_taking_the_first():
    """All points at one place: every neighbour ties, so the shares are the base rates, not index luck."""
    from magma_teach.projection import Embedding, neighbour_stats

    n = 4  # two concepts × two points per modality, all at the same spot
    emb = Embedding(z=np.ones((2 * n, 3)) / np.sqrt(3), concept=np.array([0, 0, 1, 1] * 2),
                    modality=np.array(["source"] * n + ["target"] * n), index=np.arange(2 * n) % n,
                    names=["a", "b"])
    stats = neighbour_stats(emb, k=3)
    assert stats["nearest source, same concept"] == pytest.approx(50.0)  # half the sources share it
    assert stats["cross-modal neighbours"] == pytest.approx(100 * 4 / 7)  # 4 of the 7 others
    assert stats["same-concept neighbours"] == pytest.approx(100 * 3 / 7)
    assert stats["target only: same-concept neighbours"] == pytest.approx(100 / 3)
