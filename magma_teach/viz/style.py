"""The book's figure style: the Okabe-Ito palette, colour roles, page geometry, readable fonts.

:func:`style` sets matplotlib's defaults once per chapter; :func:`displayed_font_sizes` and
:func:`check_readable` measure fonts as the book displays them, so a figure that would be unreadable
in the page fails in a test rather than in a reader's eyes.
"""

from __future__ import annotations

import warnings

import matplotlib as mpl


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

# One colour per recurring role, so that a role looks the same in every chapter. Source and target
# are the darkest and a light colour of the palette (CIE L* about 47 and 73), so they differ in
# grayscale as well as in hue; MAGMA gets the vivid vermillion that neither modality uses.
ROLE = {
    "source": PALETTE["blue"],
    "target": PALETTE["orange"],
    "magma": PALETTE["vermillion"],
    "baseline": PALETTE["sky"],
    "oracle": PALETTE["green"],
    "weak": PALETTE["purple"],
    "reference": PALETTE["black"],
}

# How each modality is drawn: marker shapes that differ in outline even at 4 px (a disc and a
# cross, not a disc and a triangle), line styles, and the ROLE colours. Use as
# ``ax.plot(x, y, **MODALITY["target"])`` or take single keys for scatter plots.
MODALITY = {
    "source": {"color": ROLE["source"], "marker": "o", "linestyle": "-"},
    "target": {"color": ROLE["target"], "marker": "X", "linestyle": "--"},
}

# --------------------------------------------------------------------------- page geometry
# The book's output column is 676 CSS px wide in a 1280-px browser window (sphinx-book-theme,
# measured in Chromium). A figure PAGE_WIDTH inches wide at DPI dots per inch is 670 px, so it is
# shown at its own size, and a font of f points is displayed at f * DPI / 96 points (CSS: 96 px
# per inch). Wider figures are scaled down to the column, and their text with them.
COLUMN_PX = 676
DPI = 100
PAGE_WIDTH = 6.7
MIN_FONT_PT = 9.0
# Longest line of plain-text output that stays inside the page (the limit for the book).
TEXT_WIDTH = 88


# ------------------------------------------------------------------------------------- style
def style(dpi: int = DPI) -> None:
    """Set the book's matplotlib defaults: palette, page-width figures, readable fonts, PNG only.

    Call it once near the top of a chapter. Fonts are at least 9.5 pt at ``dpi`` = 100, i.e. at
    least 9.9 pt as displayed in the book for any figure up to :data:`PAGE_WIDTH` inches wide.
    Figures use constrained layout, which makes room for legends outside the axes (so
    ``fig.tight_layout()`` is not needed; calling it anyway switches that figure to tight layout
    silently). In Jupyter it also asks the inline backend for PNG figures only (nbval skips PNG
    when comparing outputs, but would compare SVG text).
    """
    mpl.rcParams.update({
        "axes.prop_cycle": mpl.cycler(color=COLORS),
        "figure.dpi": dpi,
        "savefig.dpi": dpi,
        "savefig.format": "png",
        "figure.figsize": (PAGE_WIDTH, 4.0),
        "figure.constrained_layout.use": True,
        "font.size": 10.5,
        "axes.titlesize": 11.5,
        "axes.titleweight": "bold",
        "axes.labelsize": 10.5,
        "xtick.labelsize": 9.5,
        "ytick.labelsize": 9.5,
        "legend.fontsize": 9.5,
        "legend.title_fontsize": 10,
        "figure.titlesize": 12,
        "figure.titleweight": "bold",
        "lines.linewidth": 1.8,
        "lines.markersize": 7,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "legend.frameon": False,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })
    # Older chapters still call fig.tight_layout(); matplotlib then switches that figure from
    # constrained to tight layout and says so on stderr, which would land in the stored outputs.
    warnings.filterwarnings("ignore", message="The figure layout has changed to tight")
    try:  # only inside IPython with the inline backend
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except Exception:  # noqa: BLE001 - outside Jupyter there is nothing to configure
        pass


def displayed_font_sizes(fig, column_px: int = COLUMN_PX) -> list[tuple[float, str]]:
    """Font size of every visible text of ``fig`` as the book displays it, in points, with the text.

    A figure wider than the output column (``column_px`` CSS pixels) is scaled down to fit, and its
    text with it; a narrower one is shown at its own size. CSS has 96 px per inch, so a font of f
    points in a figure of w inches at d dpi is shown at ``f * d / 96 * min(1, column_px / (w d))``
    points. Returned smallest first.
    """
    from matplotlib.text import Text

    width_px = fig.get_figwidth() * fig.dpi
    scale = fig.dpi / 96 * min(1.0, column_px / width_px)
    sizes = [(t.get_fontsize() * scale, t.get_text()) for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()]
    return sorted(sizes, key=lambda s: s[0])


def check_readable(fig, min_pt: float = MIN_FONT_PT, column_px: int = COLUMN_PX) -> float:
    """Return the smallest displayed font size of ``fig`` (points); ``ValueError`` if below ``min_pt``.

    The error names the offending text, so the fix (a larger font, or a narrower figure) is clear.
    """
    sizes = displayed_font_sizes(fig, column_px)
    if not sizes:
        raise ValueError("fig has no visible text: a figure needs at least a title")
    smallest, text = sizes[0]
    if smallest < min_pt:
        raise ValueError(f"text {text!r} is displayed at {smallest:.1f} pt, below min_pt={min_pt}: "
                         f"use a larger font or a figure at most {PAGE_WIDTH} in wide")
    return smallest
