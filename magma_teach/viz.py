"""Plotting helpers shared by the book's chapters: one colour-blind-safe palette, one look.

Every figure in the book is a matplotlib PNG with a title, labelled axes (units where they exist) and
a legend. Three helpers keep that uniform without hiding matplotlib:

* :data:`PALETTE` / :data:`COLORS` — the Okabe-Ito palette (Okabe & Ito, "Color Universal Design"),
  distinguishable under the common forms of colour blindness; :data:`ROLE` names the colour each
  recurring role gets (MAGMA, baselines, source, target, ...), so a method keeps its colour across chapters.
* :func:`style` — sets matplotlib's defaults (colour cycle, sizes, grid, PNG output) once per notebook.
* :func:`finish` — titles and labels an axis, adds its legend, and checks that nothing was forgotten.

Keep this module small: it is imported by every chapter, so anything chapter-specific belongs in
the chapter.
"""

from __future__ import annotations

import matplotlib as mpl

__all__ = ["PALETTE", "COLORS", "ROLE", "style", "finish"]

# Okabe-Ito, in the order the colour cycle uses them (black is kept for reference lines).
PALETTE = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
}
COLORS = [PALETTE[k] for k in ("blue", "orange", "green", "vermillion", "sky", "purple", "yellow")]

# One colour per recurring role, so that e.g. MAGMA is the same blue in every chapter.
ROLE = {
    "magma": PALETTE["blue"],
    "baseline": PALETTE["orange"],
    "oracle": PALETTE["green"],
    "source": PALETTE["vermillion"],
    "target": PALETTE["sky"],
    "weak": PALETTE["purple"],
    "reference": PALETTE["black"],
}


def style(dpi: int = 100) -> None:
    """Set the book's matplotlib defaults: Okabe-Ito colour cycle, readable sizes, light grid, PNG only.

    Call it once near the top of a chapter. In Jupyter it also asks the inline backend for PNG
    figures only (nbval skips PNG when comparing outputs, but would compare SVG text).
    """
    mpl.rcParams.update({
        "axes.prop_cycle": mpl.cycler(color=COLORS),
        "figure.dpi": dpi,
        "savefig.dpi": dpi,
        "savefig.format": "png",
        "figure.figsize": (6.4, 4.0),
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.titlesize": 12,
        "axes.labelsize": 11,
        "legend.fontsize": 9,
        "legend.frameon": False,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })
    try:  # only inside IPython with the inline backend
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except Exception:  # noqa: BLE001 - outside Jupyter there is nothing to configure
        pass


def finish(ax, title: str, xlabel: str, ylabel: str, legend: bool = True, **legend_kwargs):
    """Give ``ax`` its title and axis labels and draw its legend; returns ``ax``.

    Raises ``ValueError`` on an empty title or label, or when ``legend=True`` but no artist on the
    axis has a label — the two mistakes that make a figure unreadable out of context.
    """
    for name, text in (("title", title), ("xlabel", xlabel), ("ylabel", ylabel)):
        if not str(text).strip():
            raise ValueError(f"{name} must be a non-empty string")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        handles, labels = ax.get_legend_handles_labels()
        if not handles:
            raise ValueError("legend=True but nothing on this axis has a label (pass label=... when plotting)")
        ax.legend(**legend_kwargs)
    return ax
