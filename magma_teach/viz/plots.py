"""Plots several chapters share: grouped few-shot bars and grids of single-channel images."""

from __future__ import annotations

import numpy as np

from magma_teach.viz.style import COLORS, PAGE_WIDTH, PALETTE, ROLE


# One colour per approach of the few-shot tables, shared by every bar chart of the book. The two
# unimodal baselines get hatched bars (see ``few_shot_bars``) so the table's "type" column shows
# in grayscale too; every bar has a dark edge so light colours stay visible on white.
APPROACH_COLOR = {
    "Unsup. pre-training": ROLE["baseline"],
    "Supervised learning": ROLE["baseline"],
    "Unsup. meta-learning (reconstruct)": PALETTE["yellow"],
    "Align + Classify": PALETTE["purple"],
    "Align + Meta Classify": PALETTE["blue"],
    "MAGMA": ROLE["magma"],
    "Oracle": ROLE["oracle"],
}


def few_shot_bars(ax, rows, approaches=None, width: float = 0.8, hatch_groups=("Uni",)):
    """Grouped bars of a few-shot table on ``ax``: one group per k, one bar per approach, ± std whiskers.

    ``rows`` is tidy (columns ``approach``, ``shots``, ``mean``, ``std``, optionally ``group``), as the
    experiment runners return it. ``approaches`` fixes the order of the bars (default: first
    appearance). Approaches whose ``group`` is in ``hatch_groups`` get hatched bars. Returns ``ax``;
    call :func:`finish` afterwards for the title, labels and legend (outside, on the right).
    """
    missing = {"approach", "shots", "mean", "std"} - set(rows.columns)
    if missing:
        raise ValueError(f"rows lacks the columns {sorted(missing)}; it needs approach, shots, mean, std")
    approaches = list(approaches or dict.fromkeys(rows["approach"]))
    shots = sorted(rows["shots"].unique())
    bar = width / len(approaches)
    x = np.arange(len(shots))
    for i, name in enumerate(approaches):
        part = rows[rows["approach"] == name].set_index("shots").reindex(shots)
        group = part["group"].iloc[0] if "group" in part else ""
        ax.bar(x - width / 2 + (i + 0.5) * bar, part["mean"], bar, yerr=part["std"], capsize=2,
               color=APPROACH_COLOR.get(name, COLORS[i % len(COLORS)]), edgecolor="0.2", linewidth=0.6,
               hatch="///" if group in hatch_groups else None, error_kw={"elinewidth": 1}, label=name)
    ax.set_xticks(x, [f"{k}-shot" for k in shots])
    return ax


def image_grid(images, titles=None, ncols: int = 5, title: str = "", frame_colors=None, row_labels=None,
               frame_legend=None, size: float | None = None, cmap: str = "gray_r"):
    """Show single-channel images (each ``(1, H, W)`` or ``(H, W)``, values in [0, 1]) in a grid.

    ``titles`` label each panel; ``frame_colors`` (one colour or ``None`` per image) draws a thick
    frame around a panel, e.g. to mark correct retrievals, and ``frame_legend`` (``{label: colour}``)
    explains those colours in a legend below the grid; ``row_labels`` name each row at its left.
    Pixel axes carry no ticks: an image's axes have no unit worth reading. The grid is at most
    :data:`PAGE_WIDTH` wide (``size``, the side of one panel in inches, defaults to what fits), so
    its text stays readable. Returns ``(fig, axes)`` with ``axes`` a 2-D array.
    """
    import matplotlib.pyplot as plt

    if ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    images = [np.asarray(im.detach().cpu() if hasattr(im, "detach") else im).squeeze() for im in images]
    if not images:
        raise ValueError("images is empty: pass at least one image")
    nrows = max(1, -(-len(images) // ncols))
    h, w = images[0].shape
    label_room = 1.0 if row_labels else 0.0
    size = size or min(1.6, (PAGE_WIDTH - label_room) / ncols)
    width = min(PAGE_WIDTH, size * ncols * max(1.0, w / h) + label_room)
    title_room = 0.35 if titles is not None else 0.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, (size + title_room) * nrows + 0.5), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        if i >= len(images):
            ax.axis("off")
            continue
        ax.imshow(images[i], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9.5, fontweight="normal")
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
    if frame_legend:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor="none", edgecolor=c, linewidth=3, label=label) for label, c in frame_legend.items()]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    return fig, axes
