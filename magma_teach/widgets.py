"""Interactive front ends for the book (Jupyter, JupyterLab, VS Code, Colab), built on ipywidgets.

:func:`umap_explorer` gives a concept picker and a toggle between trained states of a model (e.g.
"before alignment" and "after alignment"); every change redraws the UMAP picture of the chosen
concepts and prints how often a target example's nearest source example shows the same concept.

ipywidgets is an optional dependency, imported only when a widget is built. Embeddings of every
candidate concept are computed once per model state; each redraw re-runs UMAP on the chosen points
only, and remembers the result, so going back to an earlier choice is instant.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from magma_teach import viz

__all__ = ["UmapExplorer", "umap_explorer", "require_ipywidgets"]


def require_ipywidgets():
    """Import and return ipywidgets, or raise an ImportError that says how to install it."""
    try:
        import ipywidgets
    except ImportError as err:
        raise ImportError("the interactive widgets need ipywidgets: pip install ipywidgets "
                          "(or pip install 'magma_teach[book]'). Everything else in magma_teach works "
                          "without it.") from err
    return ipywidgets


def _short_text_box(widgets):
    """A VBox class whose text form is one short line.

    A notebook stores a widget's text form beside it (and shows it where widgets cannot run); the
    default one spells out every child with all its settings, a single line of 100+ characters.
    """

    class ExplorerBox(widgets.VBox):
        def __repr__(self):
            return "umap_explorer: concept picker, model toggle and UMAP picture"

    return ExplorerBox


class UmapExplorer:
    """The widget of :func:`umap_explorer`; display it (last line of a cell) or its ``ui``.

    Attributes: ``concepts`` (SelectMultiple), ``state`` (ToggleButtons), ``output`` (Output, where
    the figure goes), ``status`` (HTML line with the numbers), ``ui`` (the whole VBox). Call
    :meth:`redraw` to draw without touching the controls; it returns the matplotlib figure.
    """

    def __init__(self, models: Mapping[str, object], data, concepts: Sequence[int], selected: Sequence[int],
                 per_concept: int, seed: int, method: str, max_concepts: int):
        from magma_teach.projection import concept_colors, embed_concepts

        widgets = require_ipywidgets()
        if not models:
            raise ValueError("models must map at least one label to a model")
        self.data, self.seed, self.method, self.max_concepts = data, seed, method, max_concepts
        concepts = [int(c) for c in concepts]
        selected = [int(c) for c in selected] or concepts[:min(5, len(concepts))]
        missing = sorted(set(selected) - set(concepts))
        if missing:
            raise ValueError(f"selected concepts must be among the offered concepts; not offered: {missing}")
        self.embeddings = {label: embed_concepts(model, data, concepts, per_concept, seed)
                           for label, model in models.items()}
        self.colors = concept_colors(concepts)  # a concept keeps its colour whatever else is picked
        self._cache: dict = {}
        names = data.class_names
        self.concepts = widgets.SelectMultiple(
            options=[(names[c], c) for c in concepts], value=tuple(selected), rows=min(10, len(concepts)),
            description="concepts", layout=widgets.Layout(width="260px"))
        self.state = widgets.ToggleButtons(options=list(models), value=list(models)[-1], description="model")
        self.status = widgets.HTML()
        self.output = widgets.Output()
        self.concepts.observe(self._changed, names="value")
        self.state.observe(self._changed, names="value")
        hint = widgets.HTML("<small>Ctrl/Cmd-click to pick several concepts (at most "
                            f"{max_concepts}). ● source, ✕ target.</small>")
        self.ui = _short_text_box(widgets)([widgets.HBox([self.concepts, widgets.VBox([self.state, hint,
                                                                                       self.status])]),
                                             self.output])
        self._changed()

    def _changed(self, change=None):
        from IPython.display import display
        import matplotlib.pyplot as plt

        with self.output:
            self.output.clear_output(wait=True)
            fig = self.redraw()
            if fig is not None:
                display(fig)
                plt.close(fig)

    def redraw(self):
        """Draw the current choice; returns the figure (``None`` when fewer than 2 concepts are picked)."""
        import matplotlib.pyplot as plt

        from magma_teach.projection import neighbour_stats, plot_projection, project

        chosen = tuple(sorted(self.concepts.value))
        if len(chosen) < 2:
            self.status.value = "Pick at least two concepts."
            return None
        if len(chosen) > self.max_concepts:
            self.status.value = f"Pick at most {self.max_concepts} concepts (got {len(chosen)})."
            return None
        label = self.state.value
        emb = self.embeddings[label].of_concepts(chosen)
        key = (label, chosen)
        if key not in self._cache:
            self._cache[key] = (project(emb.z, method=self.method, seed=self.seed), neighbour_stats(emb))
        coords, stats = self._cache[key]
        self.status.value = (f"<b>{label}</b>: nearest source example shows the same concept for "
                             f"{stats['nearest source, same concept']:.0f}% of target examples "
                             f"(chance {100 / len(chosen):.0f}%); cross-modal neighbours "
                             f"{stats['cross-modal neighbours']:.0f}%")
        # Page-wide, with constrained layout (it makes room for the legend right of the data, where
        # plot_projection puts it); tight_layout would squeeze that legend back over the axes.
        fig, ax = plt.subplots(figsize=(viz.PAGE_WIDTH, 4.6), layout="constrained")
        axis_name = "UMAP" if self.method == "umap" else "PCA"
        plot_projection(ax, coords, emb, f"Shared space, {label}: {len(chosen)} concepts",
                        colors=self.colors, axis_name=axis_name)
        return fig

    def _ipython_display_(self):  # `explorer` as the last line of a cell shows the controls
        from IPython.display import display

        display(self.ui)  # works with ipywidgets 7 (Colab's default) and 8


def umap_explorer(models: Mapping[str, object], data, concepts: Sequence[int] | None = None,
                  selected: Sequence[int] = (), per_concept: int = 30, seed: int = 0, method: str = "umap",
                  max_concepts: int = 10) -> UmapExplorer:
    """A concept picker and a model-state toggle that redraw a 2-D picture of the shared space.

    Args:
        models: label → model, e.g. ``{"before alignment": init_model, "after alignment": magma_model}``;
            the toggle shows the labels in this order and starts on the last one.
        data: the :class:`~magma_teach.data.base.CrossModalDataset` whose examples are shown.
        concepts: the concepts offered in the picker (default: the meta-test concepts, unseen in training).
        selected: the concepts picked at the start (default: the first five offered).
        per_concept: examples per concept and modality (the same examples for every model).
        seed: picks the examples and seeds UMAP.
        method: ``"umap"`` or ``"pca"`` (instant, no umap-learn needed).
        max_concepts: the most concepts drawn at once (beyond 7 the colours leave the book's palette).

    Raises ImportError (with the install command) when ipywidgets is missing.
    """
    require_ipywidgets()
    if concepts is None:
        concepts = data.splits["meta_test"]
    return UmapExplorer(models, data, concepts, selected, per_concept, seed, method, max_concepts)
