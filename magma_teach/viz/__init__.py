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

Each idea has its module: :mod:`~magma_teach.viz.style` (palette, geometry, fonts),
:mod:`~magma_teach.viz.legends`, :mod:`~magma_teach.viz.plots` (bars, image grids),
:mod:`~magma_teach.viz.tables`, :mod:`~magma_teach.viz.audio` and :mod:`~magma_teach.viz.diagrams`;
everything public is importable from ``magma_teach.viz`` itself. Chapter-specific plots belong in the
chapter; this package holds what several chapters share.
"""

from magma_teach.viz.audio import AudioTable, audio_table, wav_bytes
from magma_teach.viz.diagrams import CHAPTERS, algorithm_diagram, data_flow_diagram, roadmap_diagram
from magma_teach.viz.legends import RIGHT_LEGEND_MAX, finish, legend_outside
from magma_teach.viz.plots import APPROACH_COLOR, few_shot_bars, image_grid
from magma_teach.viz.style import (COLORS, COLUMN_PX, DPI, MIN_FONT_PT, MODALITY, PAGE_WIDTH, PALETTE, ROLE,
                                   TEXT_WIDTH, check_readable, displayed_font_sizes, style)
from magma_teach.viz.tables import Table, table

__all__ = [
    "PALETTE", "COLORS", "ROLE", "MODALITY", "APPROACH_COLOR", "PAGE_WIDTH", "DPI", "MIN_FONT_PT",
    "COLUMN_PX", "TEXT_WIDTH", "RIGHT_LEGEND_MAX", "style", "finish", "legend_outside", "displayed_font_sizes",
    "check_readable", "few_shot_bars", "image_grid", "Table", "table", "AudioTable", "audio_table",
    "wav_bytes", "algorithm_diagram", "data_flow_diagram", "roadmap_diagram", "CHAPTERS",
]
