"""Titles, axis labels and legends that stay off the data: :func:`finish` and :func:`legend_outside`."""

from __future__ import annotations

import re


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
    ``where="auto"``: right, unless the legend would take more than :data:`RIGHT_LEGEND_MAX` of the
    figure's width; then below, so the data keep the page. Returns the legend.
    """
    if where not in (*_WHERE, "auto"):
        raise ValueError(f"where must be one of {(*_WHERE, 'auto')}, got {where!r}")
    if where == "auto":
        drawn = legend_outside(ax, "right", handles, labels, **kwargs)
        if _legend_width(ax.figure, drawn) <= RIGHT_LEGEND_MAX:
            return drawn
        drawn.remove()
        return legend_outside(ax, "below", handles, labels, **kwargs)
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
    legend_outside(ax, "auto" if legend is True else legend, **legend_kwargs)
    return ax
