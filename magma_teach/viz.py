"""What the reader sees: one figure style, legends outside the data, HTML tables, audio, diagrams.

Every figure in the book is a matplotlib PNG with a title, labelled axes (units where they exist) and
a legend outside the data. The helpers below keep that uniform without hiding matplotlib.

**Style** — :func:`style` sets matplotlib's defaults once per notebook: the Okabe-Ito palette
(Okabe & Ito, "Color Universal Design", distinguishable under the common colour-vision
deficiencies), figures :data:`PAGE_WIDTH` inches wide at :data:`DPI` dots per inch so that they are
shown 1:1 in the book's output column, fonts of at least :data:`MIN_FONT_PT` points *as displayed*
(:func:`displayed_font_sizes` and :func:`check_readable` measure that), and constrained layout so
legends placed outside the axes get room instead of being cut off. :data:`ROLE` names the colour of
each recurring role; :data:`MODALITY` gives the source and target modality a marker, a line style
and a colour that differ in lightness, so the two stay apart in grayscale print too.

**Labels and legends** — :func:`finish` titles and labels an axis and draws its legend;
:func:`legend_outside` puts a legend right of the axes or below the figure, never on the data.

**Tables and audio** — :func:`table` renders a pandas DataFrame as a compact HTML table (pandas
Styler), optionally with the paper's values beside ours; :func:`audio_table` shows sound clips as
``<audio>`` players, each in one row with its label. Both return objects that Jupyter, Colab and the
built book display as HTML, with a plain-text fallback no wider than :data:`TEXT_WIDTH` characters.

**Diagrams** — :func:`algorithm_diagram` (Algorithm 1: its two inner loops and two Reptile
updates), :func:`data_flow_diagram` (what is labeled where in meta-train, validation and meta-test)
and :func:`roadmap_diagram` (the chapters of the book), drawn by matplotlib alone.

Chapter-specific plots belong in the chapter; this module holds what several chapters share.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
import textwrap
import warnings
import wave
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np

__all__ = [
    "PALETTE", "COLORS", "ROLE", "MODALITY", "APPROACH_COLOR", "PAGE_WIDTH", "DPI", "MIN_FONT_PT",
    "COLUMN_PX", "TEXT_WIDTH", "RIGHT_LEGEND_MAX", "style", "finish", "legend_outside", "displayed_font_sizes",
    "check_readable", "few_shot_bars", "image_grid", "Table", "table", "AudioTable", "audio_table",
    "wav_bytes", "algorithm_diagram", "data_flow_diagram", "roadmap_diagram", "CHAPTERS",
]

# ------------------------------------------------------------------------------------- palette
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


# ------------------------------------------------------------------------- labels and legends
_WHERE = ("right", "below")
# A legend right of the axes may take at most this fraction of the figure's width; a wider one goes
# below the figure instead, so the data keep most of the page.
RIGHT_LEGEND_MAX = 0.4


def _legend_width(fig, legend) -> float:
    """Width of ``legend`` as drawn, as a fraction of the figure's width."""
    return legend.get_window_extent(fig.canvas.get_renderer()).width / fig.bbox.width


def legend_outside(ax, where: str = "right", handles=None, labels=None, **kwargs):
    """Draw ``ax``'s legend outside the data: right of the axes, or below the whole figure.

    ``where="right"`` anchors the legend's upper-left corner just right of the axes (good for
    short entries); ``where="below"`` makes a figure-level legend under all axes, in as many columns
    as fit the figure's width (good for long labels, or one legend shared by several panels).
    Constrained layout (on after :func:`style`) shrinks the axes to make room, so nothing is cut
    off and the figure keeps its width. ``handles``/``labels`` default to the labelled artists of
    ``ax``; other ``kwargs`` go to ``legend`` (``ncol`` fixes the columns of a legend below).
    Returns the legend.
    """
    if where not in _WHERE:
        raise ValueError(f"where must be one of {_WHERE}, got {where!r}")
    if handles is None:
        handles, found = ax.get_legend_handles_labels()
        labels = found if labels is None else labels
    if not handles:
        raise ValueError("the legend would be empty: nothing on this axis has a label (pass label=...)")
    if "loc" in kwargs or "bbox_to_anchor" in kwargs:
        raise ValueError("legend_outside places the legend itself; do not pass loc or bbox_to_anchor")
    fig = ax.figure
    if where == "right":
        return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                         **kwargs)
    if fig.get_layout_engine() is None:  # "outside" locations need constrained layout
        fig.set_layout_engine("constrained")
    if "ncol" in kwargs:
        return fig.legend(handles, labels, loc="outside lower center", **kwargs)
    for ncol in range(min(len(labels), 4), 0, -1):  # the most columns that fit the width
        legend = fig.legend(handles, labels, loc="outside lower center", ncol=ncol, **kwargs)
        if _legend_width(fig, legend) <= 0.98:
            return legend
        legend.remove()
    # Even one column is too wide: break the longest labels into lines until it fits.
    for chars in (70, 55, 40, 30, 20):
        legend = fig.legend(handles, [_wrap_label(str(label), chars) for label in labels],
                            loc="outside lower center", ncol=1, **kwargs)
        if _legend_width(fig, legend) <= 0.98 or chars == 20:
            return legend
        legend.remove()


def _wrap_label(label: str, chars: int) -> str:
    """``label`` broken into lines of about ``chars`` characters, never inside a $math$ span."""
    words = [w for part in re.split(r"(\$[^$]*\$)", label)
             for w in ([part] if part.startswith("$") else part.split())]
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > chars:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join(lines + [line])


def finish(ax, title: str, xlabel: str, ylabel: str, legend: bool | str = True, **legend_kwargs):
    """Give ``ax`` its title and axis labels and draw its legend outside the data; returns ``ax``.

    ``legend``: ``"right"`` (right of the axes), ``"below"`` (under the figure, see
    :func:`legend_outside`), ``True`` (right, unless the legend would take more than
    :data:`RIGHT_LEGEND_MAX` of the figure's width: then below, so the data keep the page) or
    ``False`` (no legend). Passing ``loc=...`` in ``legend_kwargs``
    asks for a legend *inside* the axes at that place, for the rare figure with a guaranteed empty
    corner; prefer the outside placements. Raises ``ValueError`` on an empty title or label, or
    when a legend is asked for but no artist on the axis has a label — the two mistakes that make
    a figure unreadable out of context.
    """
    for name, text in (("title", title), ("xlabel", xlabel), ("ylabel", ylabel)):
        if not str(text).strip():
            raise ValueError(f"{name} must be a non-empty string")
    if legend not in (True, False, *_WHERE):
        raise ValueError(f"legend must be True, False, 'right' or 'below', got {legend!r}")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend is False:
        return ax
    if not ax.get_legend_handles_labels()[0]:
        raise ValueError("legend=True but nothing on this axis has a label (pass label=... when plotting)")
    if "loc" in legend_kwargs or "bbox_to_anchor" in legend_kwargs:
        ax.legend(**legend_kwargs)
        return ax
    drawn = legend_outside(ax, "right" if legend is True else legend, **legend_kwargs)
    if legend is True and _legend_width(ax.figure, drawn) > RIGHT_LEGEND_MAX:
        drawn.remove()
        legend_outside(ax, "below", **legend_kwargs)
    return ax


# ---------------------------------------------------------------- chapter helpers (bar charts, grids)
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


# ------------------------------------------------------------------------------------ tables
_TABLE_CSS = [
    {"selector": "", "props": "border-collapse: collapse; font-size: 0.9em; margin: 0.2em 0 1em 0;"},
    {"selector": "caption", "props": "caption-side: top; text-align: left; font-weight: 600; "
                                     "padding: 0 0 0.35em 0;"},
    {"selector": "th", "props": "padding: 0.15em 0.6em; text-align: right; border-bottom: 1px solid #999; "
                                "font-weight: 600; white-space: nowrap;"},
    {"selector": "th.row_heading", "props": "text-align: left; border-bottom: none; font-weight: 500;"},
    {"selector": "td", "props": "padding: 0.15em 0.6em; text-align: right; white-space: nowrap; "
                                "font-variant-numeric: tabular-nums;"},
    {"selector": "tbody tr:nth-child(even)", "props": "background: rgba(127, 127, 127, 0.08);"},
]


class Table:
    """A table that shows as compact HTML in Jupyter, Colab and the built book, and as short text.

    ``data`` is the DataFrame shown (with the paper's columns merged in, when given), ``shown`` the
    same cells as the strings displayed, ``styler`` the pandas Styler that renders the HTML (change
    it freely before the table is displayed), ``text`` the plain-text fallback, no line wider than
    ``width`` characters.
    """

    def __init__(self, data, shown, styler, caption: str | None, width: int, index: bool):
        self.data, self.shown, self.styler, self.caption = data, shown, styler, caption
        self.width, self.index = width, index

    def _repr_html_(self) -> str:
        return self.styler.to_html()

    def to_html(self) -> str:
        """The HTML that Jupyter and the book display."""
        return self._repr_html_()

    @property
    def text(self) -> str:
        return _plain_table(self.shown, self.caption, self.width, self.index)

    def __repr__(self) -> str:
        return self.text


def _cell_text(value, precision: int, spec: str | None) -> str:
    """One cell as displayed: — for missing, ``spec`` (a format string) if given, floats rounded."""
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return "—"
    if isinstance(value, str):  # already text, e.g. the paper's "47.5 ± 0.2"
        return value
    if spec is not None:
        return spec.format(value)
    if isinstance(value, (float, np.floating)):
        return f"{value:.{precision}f}"
    return str(value)


def _as_text(data, precision: int, formats: Mapping):
    """Every cell of ``data`` as the string shown; ``formats`` maps a column (or its top level) to a spec."""
    shown = data.copy().astype(object)
    for column in data.columns:
        spec = formats.get(column, formats.get(column[0]) if isinstance(column, tuple) else None)
        shown[column] = [_cell_text(v, precision, spec) for v in data[column]]
    # Row labels keep all their digits but no float noise: 0.25 stays 0.25, 0.1 + 0.2 shows 0.3.
    shown.index = data.index.map(lambda key: tuple(map(_label_text, key)) if isinstance(key, tuple)
                                 else _label_text(key))
    shown.index.names = data.index.names
    return shown


def _label_text(value) -> str:
    return f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value)


def _plain_table(shown, caption, width: int, index: bool) -> str:
    """``shown`` as text no wider than ``width``: pandas' own layout when it fits, else one record per row."""
    lines = textwrap.wrap(caption, width) if caption else []
    # pandas separates string columns by one space; one more keeps the columns apart
    space = {c: 1 + max([len(v) for v in shown[c]] + [len(str(p)) for p in (c if isinstance(c, tuple) else (c,))])
             for c in shown.columns}
    grid = shown.to_string(index=index, line_width=width, col_space=space).splitlines()
    if max(map(len, grid), default=0) <= width:
        return "\n".join(lines + grid)
    # Too wide even column by column: one block per row, "column: value" pairs wrapped to the width.
    flat = [" / ".join(str(p) for p in c if str(p)) if isinstance(c, tuple) else str(c) for c in shown.columns]
    for key, row in zip(shown.index, shown.itertuples(index=False)):
        head = (" / ".join(map(str, key)) if isinstance(key, tuple) else str(key)) if index else ""
        body = "; ".join(f"{c}: {v}" for c, v in zip(flat, row))
        lines += textwrap.wrap(f"{head} — {body}" if head else body, width, subsequent_indent="    ",
                               break_long_words=True, break_on_hyphens=False)
    return "\n".join(lines)


def _merge_paper(df, paper, ours_label: str, paper_label: str):
    """Columns (c, ours) and, where the paper reports c, (c, paper) beside it; rows follow ``df``."""
    import pandas as pd

    if not isinstance(paper, pd.DataFrame):
        raise ValueError(f"paper must be a pandas DataFrame of the paper's values, got {type(paper).__name__}")
    shared = [c for c in df.columns if c in paper.columns]
    if not shared:
        raise ValueError(f"paper shares no column with df (df: {list(df.columns)}, paper: {list(paper.columns)})")
    if not df.index.isin(paper.index).any():
        raise ValueError("paper shares no row label with df: index both by the same keys (e.g. approach)")
    columns, parts = [], []
    for c in df.columns:
        columns.append((str(c), ours_label if c in shared else ""))
        parts.append(df[c])
        if c in shared:
            columns.append((str(c), paper_label))
            parts.append(paper[c].reindex(df.index))
    merged = pd.concat(parts, axis=1, keys=range(len(parts)))
    merged.columns = pd.MultiIndex.from_tuples(columns)
    return merged, [col for col in columns if col[1] == paper_label]


def table(df, caption: str | None = None, paper=None, *, precision: int = 1, formats: Mapping | None = None,
          index: bool = True, ours_label: str = "ours", paper_label: str = "paper",
          width: int = TEXT_WIDTH) -> Table:
    """Render ``df`` as a compact HTML table, optionally with the paper's values beside ours.

    ``df``: a pandas DataFrame. Floats are shown with ``precision`` decimals, missing values as —;
    ``formats`` maps a column to a format string (``{"loss": "{:.3f}", "runs": "{:d}"}``) for
    columns that need another look. ``caption``: a title shown above the table. ``paper``: a
    DataFrame of the paper's values indexed like ``df``; every column of ``df`` that the paper also
    reports gets a sub-column ``ours_label`` and, beside it, ``paper_label`` (in grey italics); rows
    the paper lacks show —. ``index``: show the row labels. The returned :class:`Table` displays as
    HTML (its element ids are derived from the content, so re-running a notebook gives identical
    output) and has a plain-text form no wider than ``width`` characters. Raises ``ValueError`` on
    a non-DataFrame, a negative precision, a format for a column ``df`` lacks, or a ``paper`` that
    shares no column or row with ``df``.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if not isinstance(precision, (int, np.integer)) or precision < 0:
        raise ValueError(f"precision must be an integer >= 0, got {precision!r}")
    if width < 20:
        raise ValueError(f"width must be at least 20 characters, got {width!r}")
    formats = dict(formats or {})
    unknown = [c for c in formats if c not in df.columns]
    if unknown:
        raise ValueError(f"formats names columns that df lacks: {unknown} (df has {list(df.columns)})")
    data, paper_columns = (df, []) if paper is None else _merge_paper(df, paper, ours_label, paper_label)
    shown = _as_text(data, precision, {str(k) if paper is not None else k: v for k, v in formats.items()})
    digest = hashlib.sha1((shown.to_csv() + str(caption)).encode()).hexdigest()[:10]
    styler = shown.style.set_uuid(f"mt{digest}").set_table_styles(_TABLE_CSS)
    if caption:
        styler = styler.set_caption(html.escape(caption))
    if paper_columns:
        styler = styler.set_properties(subset=paper_columns, **{"color": "#666", "font-style": "italic"})
    if not index:
        styler = styler.hide(axis="index")
    return Table(data, shown, styler, caption, width, index)


# ------------------------------------------------------------------------------------- audio
def wav_bytes(audio, rate: int, normalize: bool = True) -> bytes:
    """A mono 16-bit PCM WAV file of ``audio`` (shape ``(n,)`` or ``(1, n)``, floats) at ``rate`` Hz.

    ``normalize`` scales the loudest sample to full scale (as ``IPython.display.Audio`` does);
    without it, samples must lie in [-1, 1]. Raises ``ValueError`` on a non-positive rate, empty,
    multi-channel or non-finite audio, or out-of-range samples when ``normalize=False``.
    """
    if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
        raise ValueError(f"rate must be a positive integer number of samples per second, got {rate!r}")
    x = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float64)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"audio must be a non-empty mono waveform of shape (n,) or (1, n), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("audio contains NaN or infinite samples")
    peak = float(np.abs(x).max())
    if normalize and peak > 0:
        x = x / peak
    elif not normalize and peak > 1.0:
        raise ValueError(f"audio samples must lie in [-1, 1] when normalize=False, peak is {peak:.3g}")
    pcm = np.round(x * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


class AudioTable:
    """Sound clips as a table: one row per clip, its label(s) in the first cells and its player last.

    Displays as HTML (``<audio controls>`` with the WAV inline, base64), so label and player stay
    together in Jupyter, Colab and the built book; ``text`` is a plain-text fallback.
    """

    def __init__(self, columns: list[str], rows: list[tuple[list[str], bytes, float]], caption: str | None,
                 width: int):
        self.columns, self.rows, self.caption, self.width = columns, rows, caption, width

    def _repr_html_(self) -> str:
        cell = 'style="padding: 0.2em 0.7em; text-align: left; vertical-align: middle;"'
        parts = ['<table class="magma-audio" style="border-collapse: collapse; margin: 0.2em 0 1em 0;">']
        if self.caption:
            parts.append('<caption style="caption-side: top; text-align: left; font-weight: 600;">'
                         f"{html.escape(self.caption)}</caption>")
        heads = "".join(f"<th {cell}>{html.escape(c)}</th>" for c in [*self.columns, "listen"])
        parts.append(f'<thead><tr style="border-bottom: 1px solid #999;">{heads}</tr></thead><tbody>')
        for labels, wav, _ in self.rows:
            data = base64.b64encode(wav).decode("ascii")
            cells = "".join(f"<td {cell}>{html.escape(v)}</td>" for v in labels)
            player = (f'<audio controls preload="metadata" style="height: 2.2em; max-width: 19em;" '
                      f'src="data:audio/wav;base64,{data}"></audio>')
            parts.append(f"<tr>{cells}<td {cell}>{player}</td></tr>")
        parts.append("</tbody></table>")
        return "".join(parts)

    @property
    def text(self) -> str:
        lines = textwrap.wrap(self.caption, self.width) if self.caption else []
        for labels, _, seconds in self.rows:
            entry = ", ".join(f"{c}: {v}" for c, v in zip(self.columns, labels))
            lines += textwrap.wrap(f"{entry} [audio, {seconds:.1f} s]", self.width, subsequent_indent="    ")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text


def _clip_parts(clip, i: int, rate: int | None):
    """(labels {column: text}, waveform, rate) of one clip given as a mapping or a tuple."""
    if isinstance(clip, Mapping):
        if "audio" not in clip:
            raise ValueError(f"clips[{i}] has no 'audio' key; a clip is {{'audio': waveform, 'rate': Hz, label: ...}}")
        labels = {str(k): str(v) for k, v in clip.items() if k not in ("audio", "rate")}
        return labels, clip["audio"], clip.get("rate", rate)
    if isinstance(clip, Sequence) and len(clip) in (2, 3) and not isinstance(clip, str):
        return {"clip": str(clip[0])}, clip[1], clip[2] if len(clip) == 3 else rate
    raise ValueError(f"clips[{i}] must be a mapping with an 'audio' key or a tuple (label, audio[, rate]), "
                     f"got {type(clip).__name__}")


def audio_table(clips, rate: int | None = None, caption: str | None = None, normalize: bool = True,
                width: int = TEXT_WIDTH) -> AudioTable:
    """Show sound clips as one table: each row holds a clip's label(s) and its ``<audio>`` player.

    ``clips``: a sequence of mappings ``{"audio": waveform, "rate": Hz, <label>: <value>, ...}`` —
    every key besides ``audio`` and ``rate`` becomes a column, in order — or of tuples
    ``(label, waveform)`` / ``(label, waveform, rate)``. Waveforms are 1-D arrays or tensors of
    floats. ``rate`` (Hz) applies to clips that do not give their own. ``normalize`` scales each
    clip to full loudness (see :func:`wav_bytes`). Raises ``ValueError`` on an empty ``clips``, a
    clip without audio or rate, or clips whose label columns differ.
    """
    if isinstance(clips, (str, bytes)) or not isinstance(clips, Sequence) or not clips:
        raise ValueError("clips must be a non-empty sequence of clips (mappings or (label, audio) tuples)")
    columns, rows = None, []
    for i, clip in enumerate(clips):
        labels, audio, clip_rate = _clip_parts(clip, i, rate)
        if clip_rate is None:
            raise ValueError(f"clips[{i}] has no sample rate: give it a 'rate' or pass rate=... to audio_table")
        if columns is None:
            columns = list(labels)
        elif list(labels) != columns:
            raise ValueError(f"clips[{i}] has label columns {list(labels)}, but clips[0] has {columns}")
        wav = wav_bytes(audio, int(clip_rate), normalize)
        seconds = (len(wav) - 44) / 2 / int(clip_rate)  # 44-byte header, 2 bytes per sample
        rows.append(([labels[c] for c in columns], wav, seconds))
    return AudioTable(columns, rows, caption, width)


# ---------------------------------------------------------------------------------- diagrams
# Diagrams are drawn on one axes whose data units are inches, so boxes and gaps read as sizes.
_TINT = {"source": "#D4E6F3", "target": "#FBEBC8", "update": "#EFE3EC", "neutral": "#EEEEEE",
         "store": "#E2F2EC", "test": "#F8DCCB"}
_EDGE = {"source": ROLE["source"], "target": "#B07A00", "update": "#8E5478", "neutral": "0.35",
         "store": "#00795A", "test": ROLE["magma"]}


def _canvas(width: float, height: float):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width, height), layout="none")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    return fig, ax


def _box(ax, x, y, w, h, text, kind="neutral", size=9.5, heading=None, align="center", dy=0.0):
    """A rounded box with lower-left corner (x, y); ``heading`` is a bold first line; ``dy`` moves the text."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.08",
                                facecolor=_TINT[kind], edgecolor=_EDGE[kind], linewidth=1.3))
    tx = x + w / 2 if align == "center" else x + 0.1
    if heading:
        ax.text(tx, y + h - 0.1, heading, ha=align, va="top", fontsize=size + 0.5, fontweight="bold")
        ax.text(tx, y + (h - 0.32) / 2, text, ha=align, va="center", fontsize=size, linespacing=1.35)
    else:
        ax.text(tx, y + h / 2 + dy, text, ha=align, va="center", fontsize=size, linespacing=1.35)


def _arrow(ax, start, end, text=None, color="0.25", rad=0.0, size=9.5, offset=(0.0, 0.0), style="-|>",
           ls="-"):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle=style, color=color, lw=1.4, ls=ls,
                                                          shrinkA=2, shrinkB=2, mutation_scale=14,
                                                          connectionstyle=f"arc3,rad={rad}"))
    if text:
        mid = ((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1])
        ax.text(*mid, text, ha="center", va="center", fontsize=size, color=color,
                bbox=dict(boxstyle="round,pad=0.12", facecolor="white", edgecolor="none"))


def algorithm_diagram():
    """Algorithm 1 of the paper as a picture: two inner loops, two Reptile updates, one store.

    Top row: an alignment task of unlabeled pairs (x_s, x_t); inner loop 1 adapts copies of the two
    encoders on the alignment loss (eq. 3 or 4); Reptile update 1 moves e_s^meta and e_t^meta a
    fraction ε of the way to them. Bottom row: a labeled source task; inner loop 2 adapts a copy of
    the classifier φ on top of e_s; Reptile update 2 moves φ^meta. The meta-parameters sit between
    the rows: every inner loop starts from them and every update writes to them. Returns the figure.
    """
    W, H = PAGE_WIDTH, 5.1
    fig, ax = _canvas(W, H)
    ax.text(W / 2, H - 0.12, "Algorithm 1: one meta-training iteration of MAGMA", ha="center", va="top",
            fontsize=12, fontweight="bold")
    xs, ws = (0.05, 2.2, 4.75), (1.8, 2.2, 1.9)  # columns: task | inner loop | Reptile update
    top, bottom, bh = 3.2, 0.78, 1.32

    def row(y, task, task_kind, loop, update, label):
        _box(ax, xs[0], y, ws[0], bh, task[1], task_kind, heading=task[0])
        _box(ax, xs[1], y, ws[1], bh, loop[1], "neutral", heading=loop[0])
        _box(ax, xs[2], y, ws[2], bh, update[1], "update", heading=update[0])
        _arrow(ax, (xs[0] + ws[0], y + bh / 2), (xs[1], y + bh / 2))
        _arrow(ax, (xs[1] + ws[1], y + bh / 2), (xs[2], y + bh / 2))
        ax.text((xs[1] + ws[1] + xs[2]) / 2, y + bh / 2 + 0.1, label, ha="center", va="bottom", fontsize=10)

    row(top, ("Alignment task $\\mathcal{T}_a$", "pairs $(x_s, x_t)$\nof meta-train concepts,\nno labels"),
        "target",
        ("Inner loop 1", "copies $e_s, e_t \\leftarrow e_s^{meta}, e_t^{meta}$;\n"
                         "$k$ steps on the alignment\nloss (eq. 3 or eq. 4)"),
        ("Reptile update 1", "$e^{meta} \\leftarrow e^{meta}$\n$+\\ \\epsilon\\,(\\tilde e - e^{meta})$\n"
                             "for $e_s$ and for $e_t$"), "$\\tilde e_s, \\tilde e_t$")
    row(bottom, ("Source task $\\mathcal{T}_s$", "$N$-way, labeled\n$(x_s, y_s)$ of\nmeta-train concepts"),
        "source",
        ("Inner loop 2", "copy $\\phi \\leftarrow \\phi^{meta}$;\n$k$ cross-entropy steps\non $\\phi(e_s(x_s))$"),
        ("Reptile update 2", "$\\phi^{meta} \\leftarrow \\phi^{meta}$\n"
                             "$+\\ \\epsilon\\,(\\tilde\\phi - \\phi^{meta})$"),
        "$\\tilde\\phi$")
    # The store of meta-parameters between the rows: inner loops read it, updates write it.
    sy, sh = 2.3, 0.5
    _box(ax, xs[1], sy, xs[2] + ws[2] - xs[1], sh,
         "meta-parameters  $e_s^{meta},\\ e_t^{meta},\\ \\phi^{meta}$", "store", size=10)
    loop_x, upd_x = xs[1] + ws[1] / 2, xs[2] + ws[2] / 2
    for x, (y0, y1), text in ((loop_x, (sy + sh, top), "start from"), (upd_x, (top, sy + sh), "move"),
                              (loop_x, (sy, bottom + bh), "start from"), (upd_x, (bottom + bh, sy), "move")):
        _arrow(ax, (x, y0), (x, y1))
        ax.text(x + 0.1, (y0 + y1) / 2, text, ha="left", va="center", fontsize=9.5, color="0.3")
    ax.text(xs[0] + ws[0] / 2, sy + sh / 2, "① meta-alignment ↑\n② meta-classifier ↓", ha="center",
            va="center", fontsize=10, fontweight="bold", linespacing=1.6)
    ax.text(W / 2, 0.38, "Repeat ① and ② every iteration; $\\epsilon \\in (0, 1]$ is the meta step size. "
            "No target label is used.\nEvery few iterations, score few-shot target tasks of the validation "
            "concepts; keep the best.", ha="center", va="center", fontsize=9.5, linespacing=1.4)
    return fig


def data_flow_diagram():
    """Which data and which labels each stage uses, in the spirit of the paper's Figure 2(c).

    Three columns of disjoint concepts: meta-train (labeled source tasks and unlabeled pairs train
    the meta-parameters), validation (few-shot target tasks, used only to choose which iteration
    to keep) and meta-test (few-shot target tasks of never-seen concepts: fine-tune on the k
    labeled support examples, then score the query examples). Returns the figure.
    """
    W, H = PAGE_WIDTH, 5.6
    fig, ax = _canvas(W, H)
    ax.text(W / 2, H - 0.1, "Meta-train, validation, meta-test: what is labeled where",
            ha="center", va="top", fontsize=12, fontweight="bold")
    cols = ((0.3, 2.1), (2.6, 1.95), (4.7, 1.95))
    heads = ("Meta-train: concepts A", "Validation: concepts B", "Meta-test: concepts C")
    for (x, w), head in zip(cols, heads):
        ax.text(x + w / 2, H - 0.55, head, ha="center", va="top", fontsize=10, fontweight="bold")
    (x0, w0), (x1, w1), (x2, w2) = cols
    y_src, h_src, y_tgt, h_tgt = 3.72, 0.95, 2.02, 1.3
    ax.text(x0, y_src + h_src + 0.06, "source modality", fontsize=9.5, color=ROLE["source"], va="bottom",
            fontweight="bold")
    ax.text(x0, y_tgt + h_tgt + 0.06, "target modality", fontsize=9.5, color=_EDGE["target"], va="bottom",
            fontweight="bold")

    def tagged(x, y, w, h, text, tag, kind, tag_color):
        _box(ax, x, y, w, h, text, kind)
        ax.text(x + w / 2, y + 0.08, tag, ha="center", va="bottom", fontsize=9.5, fontweight="bold",
                color=tag_color)

    tagged(x0, y_src, w0, h_src, "many examples\n$(x_s, y_s)$ → source tasks $\\mathcal{T}_s$\n",
           "labels: train $\\phi$", "source", ROLE["source"])
    tagged(x0, y_tgt, w0, h_tgt, "few examples, paired\nwith source examples\n"
                                 "$(x_s, x_t)$ → alignment\ntasks $\\mathcal{T}_a$\n", "labels: none", "target", "0.3")
    tagged(x1, y_tgt, w1, h_tgt, "few-shot tasks:\n$k$ labeled shots\nand a query set\n\n",
           "labels: model choice", "target", "#8E5478")
    tagged(x2, y_tgt, w2, h_tgt, "new tasks $\\mathcal{T}_t$:\nfine-tune on $k$ shots,\nclassify the query\n\n",
           "query labels: score only", "target", ROLE["magma"])
    for x, w in ((x1, w1), (x2, w2)):
        ax.text(x + w / 2, y_src + h_src / 2, "not used", ha="center", va="center", fontsize=9.5, color="0.45",
                style="italic")
    # meta-parameters, then where they go
    sy, sh = 0.72, 0.7
    _box(ax, x0, sy, w0, sh, "$e_s^{meta},\\ e_t^{meta},\\ \\phi^{meta}$", "store", size=10.5)
    _box(ax, x1, sy, w1, sh, "keep the best\niteration", "update")
    _box(ax, x2, sy, w2, sh, "accuracy on\nunseen concepts", "test")
    # both meta-train rows feed Algorithm 1: the source row along the left margin
    ax.plot([x0, 0.12, 0.12], [y_src + h_src / 2, y_src + h_src / 2, sy + sh / 2], color="0.25", lw=1.4)
    _arrow(ax, (0.12, sy + sh / 2), (x0, sy + sh / 2))
    _arrow(ax, (x0 + w0 / 2, y_tgt), (x0 + w0 / 2, sy + sh))
    ax.text(x0 + w0 / 2 + 0.08, (y_tgt + sy + sh) / 2, "Algorithm 1", ha="left", va="center", fontsize=9.5,
            color="0.3")
    for x, w, text in ((x1, w1, "selection"), (x2, w2, "evaluation")):
        _arrow(ax, (x + w / 2, y_tgt), (x + w / 2, sy + sh))
        ax.text(x + w / 2 + 0.08, (y_tgt + sy + sh) / 2, text, ha="left", va="center", fontsize=9.5, color="0.3")
    _arrow(ax, (x0 + w0, sy + sh / 2), (x1, sy + sh / 2))
    _arrow(ax, (x1 + w1, sy + sh / 2), (x2, sy + sh / 2))
    ax.text(W / 2, 0.3, "Concepts A, B and C are disjoint: meta-test concepts are never seen before the test.",
            ha="center", va="center", fontsize=9.5)
    return fig


# The book's chapters, grouped as the roadmap draws them: (part, [(number, short title), ...]).
CHAPTERS = [
    ("Foundations", [("01", "Theory: when can\na modality borrow?"), ("02", "Contrastive\nalignment"),
                     ("03", "Reptile,\nintuitively")]),
    ("The method", [("04", "Meta-alignment:\nAlgorithm 1"), ("05", "Image → audio"),
                    ("06", "What makes meta-\nalignment work")]),
    ("More settings", [("07", "Retrieval"), ("08", "Text → speech"), ("09", "Noisy labels")]),
    ("Understanding", [("10", "Alignment vs\nsupervision"), ("11", "UMAP of the\nshared space")]),
    ("Your turn", [("12", "Bring your own\nmodalities"), ("13", "The paper's\nown data")]),
]


def roadmap_diagram(chapters=None):
    """The book's chapters as a map: one row per part, one box per chapter, read top to bottom.

    ``chapters`` defaults to :data:`CHAPTERS` (a list of ``(part, [(number, title), ...])``; a
    title may hold one line break). Returns the figure.
    """
    chapters = CHAPTERS if chapters is None else chapters
    if not chapters or any(not items for _, items in chapters):
        raise ValueError("chapters must be a non-empty list of (part, [(number, title), ...]) with no empty part")
    widest = max(len(items) for _, items in chapters)
    W, label_w, gap, bh, row_gap = PAGE_WIDTH, 1.45, 0.25, 0.8, 0.2
    bw = (W - 0.05 - label_w - gap * widest) / widest
    H = len(chapters) * (bh + row_gap) + 0.45
    fig, ax = _canvas(W, H)
    ax.text(W / 2, H - 0.08, "A map of the book", ha="center", va="top", fontsize=12, fontweight="bold")
    kinds = ("source", "update", "target", "store", "test")
    for r, (part, items) in enumerate(chapters):
        y = H - 0.45 - (r + 1) * bh - r * row_gap
        ax.text(0.05, y + bh / 2, part, ha="left", va="center", fontsize=10.5, fontweight="bold")
        if r < len(chapters) - 1:
            _arrow(ax, (0.35, y), (0.35, y - row_gap), color="0.5")
        for i, (number, title) in enumerate(items):
            x = label_w + i * (bw + gap)
            _box(ax, x, y, bw, bh, title, kinds[r % len(kinds)], size=9.5, dy=-0.08)  # below the number
            ax.text(x + 0.07, y + bh - 0.05, number, ha="left", va="top", fontsize=9.5, fontweight="bold",
                    color=_EDGE[kinds[r % len(kinds)]])
            if i < len(items) - 1:
                _arrow(ax, (x + bw, y + bh / 2), (x + bw + gap, y + bh / 2), color="0.5")
    return fig
