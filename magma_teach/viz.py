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


# ---------------------------------------------------------------- chapter helpers (tables and galleries)
# One colour per approach of the few-shot tables, shared by every bar chart of the book. The two
# unimodal baselines get hatched bars (see ``few_shot_bars``) so the table's "type" column shows too.
APPROACH_COLOR = {
    "Unsup. pre-training": PALETTE["orange"],
    "Supervised learning": PALETTE["orange"],
    "Unsup. meta-learning (reconstruct)": PALETTE["yellow"],
    "Align + Classify": PALETTE["sky"],
    "Align + Meta Classify": PALETTE["purple"],
    "MAGMA": ROLE["magma"],
    "Oracle": ROLE["oracle"],
}
__all__ += ["APPROACH_COLOR", "few_shot_bars", "image_grid"]


def few_shot_bars(ax, rows, approaches=None, width: float = 0.8, hatch_groups=("Uni",)):
    """Grouped bars of a few-shot table on ``ax``: one group per k, one bar per approach, ± std whiskers.

    ``rows`` is tidy (columns ``approach``, ``shots``, ``mean``, ``std``, optionally ``group``), as the
    experiment runners return it. ``approaches`` fixes the order of the bars (default: first
    appearance). Approaches whose ``group`` is in ``hatch_groups`` get hatched bars. Returns ``ax``;
    call :func:`finish` afterwards for the title, labels and legend.
    """
    import numpy as np

    approaches = list(approaches or dict.fromkeys(rows["approach"]))
    shots = sorted(rows["shots"].unique())
    bar = width / len(approaches)
    x = np.arange(len(shots))
    for i, name in enumerate(approaches):
        part = rows[rows["approach"] == name].set_index("shots").reindex(shots)
        group = part["group"].iloc[0] if "group" in part else ""
        ax.bar(x - width / 2 + (i + 0.5) * bar, part["mean"], bar, yerr=part["std"], capsize=2,
               color=APPROACH_COLOR.get(name, COLORS[i % len(COLORS)]), edgecolor="white", linewidth=0.5,
               hatch="//" if group in hatch_groups else None, error_kw={"elinewidth": 1}, label=name)
    ax.set_xticks(x, [f"{k}-shot" for k in shots])
    return ax


def image_grid(images, titles=None, ncols: int = 5, title: str = "", frame_colors=None, row_labels=None,
               frame_legend=None, size: float = 1.6, cmap: str = "gray_r"):
    """Show single-channel images (each ``(1, H, W)`` or ``(H, W)``, values in [0, 1]) in a grid.

    ``titles`` label each panel; ``frame_colors`` (one colour or ``None`` per image) draws a thick
    frame around a panel, e.g. to mark correct retrievals, and ``frame_legend`` (``{label: colour}``)
    explains those colours in a legend below the grid; ``row_labels`` name each row at its left.
    Pixel axes carry no ticks: an image's axes have no unit worth reading. Returns ``(fig, axes)``
    with ``axes`` a 2-D array.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    images = [np.asarray(im.detach().cpu() if hasattr(im, "detach") else im).squeeze() for im in images]
    nrows = max(1, -(-len(images) // ncols))
    h, w = images[0].shape
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols * max(1.0, w / h) / 1.6, size * nrows + 0.5),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        if i >= len(images):
            ax.axis("off")
            continue
        ax.imshow(images[i], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
        color = frame_colors[i] if frame_colors is not None else None
        for spine in ax.spines.values():
            spine.set_visible(color is not None)
            if color is not None:
                spine.set_color(color)
                spine.set_linewidth(3)
    for r, label in enumerate(row_labels or []):
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if frame_legend:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor="none", edgecolor=c, linewidth=3, label=label) for label, c in frame_legend.items()]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, 0.0))
        fig.subplots_adjust(bottom=max(fig.subplotpars.bottom, 0.35 / fig.get_figheight() + 0.02))
    return fig, axes
