"""DataFrames as compact HTML tables (pandas Styler) with a plain-text fallback, the paper's values beside ours."""

from __future__ import annotations

import hashlib
import html
import textwrap
from collections.abc import Mapping

import numpy as np

from magma_teach.viz.style import TEXT_WIDTH


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
