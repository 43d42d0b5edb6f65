"""viz: the book's figure style, legends outside the data, HTML tables, audio tables and diagrams."""

from __future__ import annotations

import base64
import io
import re
import wave

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from magma_teach import viz  # noqa: E402
from magma_teach.viz import legends  # noqa: E402


@pytest.fixture(autouse=True)
def book_style():
    with matplotlib.rc_context():
        viz.style()
        yield
    plt.close("all")


def _lightness(color) -> float:
    """CIE L* (0 = black, 100 = white) of an sRGB colour: what a grayscale print keeps."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(color)]
    y = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 116 * y ** (1 / 3) - 16 if y > 0.008856 else 903.3 * y


def _extents(fig, legend, ax):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return legend.get_window_extent(renderer), ax.get_window_extent(renderer), fig.bbox


# ---------------------------------------------------------------------------- style and fonts
def test_style_sets_readable_page_width_defaults():
    rc = matplotlib.rcParams
    assert rc["figure.dpi"] == viz.DPI == 100
    assert rc["savefig.format"] == "png"
    assert rc["figure.figsize"][0] == viz.PAGE_WIDTH
    assert rc["figure.constrained_layout.use"] is True
    assert not rc["legend.frameon"]
    for key in ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize", "ytick.labelsize",
                "legend.fontsize", "legend.title_fontsize", "figure.titlesize"):
        assert float(rc[key]) >= 9.5, key
    assert [c.lower() for c in rc["axes.prop_cycle"].by_key()["color"]] == [c.lower() for c in viz.COLORS]


def test_page_width_figure_is_shown_at_its_own_size():
    # 6.7 in at 100 dpi = 670 px, inside the 676-px column: no scaling, so f pt shows as f * 100/96 pt.
    assert viz.PAGE_WIDTH * viz.DPI <= viz.COLUMN_PX
    fig, ax = plt.subplots()
    ax.set_title("title", fontsize=12)
    (size, text), = viz.displayed_font_sizes(fig)[-1:]
    assert text == "title" and size == pytest.approx(12 * 100 / 96)


def test_wide_figure_text_is_scaled_down_with_it():
    # 10 in at 100 dpi = 1000 px, shown in 676 px: 12 pt * 100/96 * 0.676 = 8.45 pt, too small.
    fig = plt.figure(figsize=(10, 3))
    fig.text(0.5, 0.5, "tiny", fontsize=12)
    (size, text), = viz.displayed_font_sizes(fig)
    assert size == pytest.approx(12 * 100 / 96 * 676 / 1000)
    with pytest.raises(ValueError, match="'tiny' is displayed at 8.5 pt, below min_pt=9.0"):
        viz.check_readable(fig)
    with pytest.raises(ValueError, match="no visible text"):
        viz.check_readable(plt.figure())


def test_default_plot_with_legend_is_readable():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="a line")
    viz.finish(ax, "Title", "x (s)", "y (%)")
    assert viz.check_readable(fig) >= 9.5 * 100 / 96 - 1e-9


def test_modalities_differ_in_marker_line_and_lightness():
    source, target = viz.MODALITY["source"], viz.MODALITY["target"]
    assert source["marker"] != target["marker"]
    assert {source["marker"], target["marker"]} & {"^", "v", "<", ">"} == set(), "triangles look like discs"
    assert source["linestyle"] != target["linestyle"]
    assert source["color"] == viz.ROLE["source"] and target["color"] == viz.ROLE["target"]
    assert abs(_lightness(source["color"]) - _lightness(target["color"])) >= 20
    assert _lightness("#000000") == pytest.approx(0, abs=1e-6)
    assert _lightness("#FFFFFF") == pytest.approx(100, abs=0.01)


def test_roles_use_the_colour_blind_safe_palette():
    assert set(viz.ROLE.values()) <= set(viz.PALETTE.values())
    assert len(set(viz.ROLE.values())) == len(viz.ROLE), "two roles share a colour"


# ------------------------------------------------------------------------------------ legends
@pytest.mark.parametrize("where", ["right", "below", "auto"])
def test_legend_outside_does_not_touch_the_data_and_is_not_cut_off(where):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="source, 5 labels (reference)", **viz.MODALITY["source"])
    ax.plot([0, 1], [1, 0], label="target, 0 labels", **viz.MODALITY["target"])
    legend = viz.legend_outside(ax, where)
    box, axes, figure = _extents(fig, legend, ax)
    assert not box.overlaps(axes)
    assert figure.x0 <= box.x0 and box.x1 <= figure.x1 and figure.y0 <= box.y0 and box.y1 <= figure.y1
    assert fig.get_figwidth() == viz.PAGE_WIDTH  # room made inside the figure, not by growing it


def test_finish_puts_short_legends_right_and_long_ones_below():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="short")
    viz.finish(ax, "T", "x", "y")
    box, axes, _ = _extents(fig, ax.get_legend(), ax)
    assert box.x0 >= axes.x1 and not fig.legends

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="a label much longer than the limit for the right side, " * 2)
    ax.plot([0, 1], [1, 0], label="short")
    viz.finish(ax, "T", "x", "y")
    assert ax.get_legend() is None and len(fig.legends) == 1
    box, axes, figure = _extents(fig, fig.legends[0], ax)
    assert box.y1 <= axes.y0 and box.width <= figure.width
    assert fig.legends[0]._ncols == 1  # two columns would not fit the page
    assert "\n" in fig.legends[0].get_texts()[0].get_text()  # nor would one line


def test_long_labels_wrap_between_words_never_inside_math():
    label = r"target accuracy with $k = 5$ labels after $\epsilon = 0.1$ annealing, mean of ten runs"
    wrapped = legends._wrap_label(label, 30)
    assert wrapped.replace("\n", " ") == label
    assert all(line.count("$") % 2 == 0 for line in wrapped.splitlines())
    assert max(len(line) for line in wrapped.splitlines()) <= 30


def test_legend_below_uses_as_many_columns_as_fit():
    fig, ax = plt.subplots()
    for i in range(6):
        ax.plot([0, 1], [i, i], label=f"line {i}")
    legend = viz.legend_outside(ax, "below")
    assert legend._ncols == 4  # at most 4 columns, and 4 short entries fit
    assert viz.legend_outside(ax, "below", ncol=2)._ncols == 2


def test_finish_labels_and_errors():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert viz.finish(ax, "T", "x (s)", "y", legend=False) is ax
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("T", "x (s)", "y")
    with pytest.raises(ValueError, match="title must be a non-empty string"):
        viz.finish(ax, " ", "x", "y", legend=False)
    with pytest.raises(ValueError, match="nothing on this axis has a label"):
        viz.finish(ax, "T", "x", "y")
    with pytest.raises(ValueError, match="legend must be True, False, 'right' or 'below', got 'left'"):
        viz.finish(ax, "T", "x", "y", legend="left")


def test_auto_legend_goes_below_exactly_when_it_would_take_too_much_of_the_width_beside_the_data():
    """``where="auto"`` (what finish and plot_projection use) measures the legend drawn on the right: at most
    RIGHT_LEGEND_MAX of the figure's width stays there, wider goes below; explicit handles are kept."""
    from matplotlib.lines import Line2D

    for label, beside in (("short", True), ("a label much longer than the limit for the right side " * 2, False)):
        fig, ax = plt.subplots()
        handles = [Line2D([], [], label=label)]
        drawn = viz.legend_outside(ax, "auto", handles=handles, labels=[label])
        right = fig.legends == []
        assert right == beside and (ax.get_legend() is drawn) == beside
        if beside:
            assert legends._legend_width(fig, drawn) <= viz.RIGHT_LEGEND_MAX
        else:  # what the right side would have taken
            probe = viz.legend_outside(plt.subplots()[1], "right", handles=handles, labels=[label])
            assert legends._legend_width(probe.figure, probe) > viz.RIGHT_LEGEND_MAX
        plt.close("all")


def test_legend_outside_errors():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="the legend would be empty"):
        viz.legend_outside(ax)
    ax.plot([0, 1], label="a")
    with pytest.raises(ValueError, match="where must be one of"):
        viz.legend_outside(ax, "inside")
    with pytest.raises(ValueError, match="do not pass loc"):
        viz.legend_outside(ax, loc="upper right")


# ------------------------------------------------------------------------ bar charts and grids
def test_few_shot_bars_one_bar_per_approach_and_shot():
    rows = pd.DataFrame({"approach": ["MAGMA", "MAGMA", "Oracle", "Oracle"], "shots": [1, 5, 1, 5],
                         "mean": [40.0, 60.0, 45.0, 70.0], "std": [1.0, 2.0, 1.0, 2.0],
                         "group": ["Cross", "Cross", "Oracle", "Oracle"]})
    fig, ax = plt.subplots()
    viz.few_shot_bars(ax, rows)
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == [40.0, 45.0, 60.0, 70.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1-shot", "5-shot"]
    with pytest.raises(ValueError, match=r"rows lacks the columns \['std'\]"):
        viz.few_shot_bars(ax, rows.drop(columns="std"))


def test_image_grid_fits_the_page_and_stays_readable():
    images = [np.full((8, 8), i / 12) for i in range(12)]
    fig, axes = viz.image_grid(images, titles=[f"#{i}" for i in range(12)], ncols=6, title="Twelve",
                               row_labels=["a", "b"], frame_colors=[viz.ROLE["magma"]] + [None] * 11,
                               frame_legend={"correct": viz.ROLE["magma"]})
    assert axes.shape == (2, 6)
    assert fig.get_figwidth() <= viz.PAGE_WIDTH
    viz.check_readable(fig)
    with pytest.raises(ValueError, match="images is empty"):
        viz.image_grid([])


# ------------------------------------------------------------------------------------- tables
def _results():
    ours = pd.DataFrame({"1-shot": [47.04, 40.25], "5-shot": [80.55, 70.0], "runs": [10, 10]},
                        index=pd.Index(["MAGMA", "Align + Classify"], name="approach"))
    paper = pd.DataFrame({"1-shot": ["47.5 ± 0.2"], "5-shot": ["85.9 ± 0.7"]}, index=["MAGMA"])
    return ours, paper


def test_table_html_has_caption_values_and_no_random_ids():
    ours, _ = _results()
    shown = viz.table(ours, caption="Few-shot accuracy (%) <ours>")
    page = shown._repr_html_()
    assert "<caption>Few-shot accuracy (%) &lt;ours&gt;</caption>" in page
    assert ">47.0</td>" in page and ">80.5</td>" in page and ">10</td>" in page
    assert page == viz.table(ours, caption="Few-shot accuracy (%) <ours>").to_html()  # stable across runs
    assert len(set(re.findall(r'id="T_(\w+?)_', page))) == 1
    assert "approach" in page
    assert ">approach<" not in viz.table(ours, index=False).to_html()


def test_table_puts_the_papers_values_beside_ours():
    ours, paper = _results()
    shown = viz.table(ours, caption="Table 2", paper=paper)
    assert list(shown.data.columns) == [("1-shot", "ours"), ("1-shot", "paper"), ("5-shot", "ours"),
                                        ("5-shot", "paper"), ("runs", "")]
    assert shown.data.loc["MAGMA", ("1-shot", "paper")] == "47.5 ± 0.2"
    assert pd.isna(shown.data.loc["Align + Classify", ("1-shot", "paper")])
    page = shown.to_html()
    assert "47.5 ± 0.2" in page and "font-style: italic" in page and "—" in page
    text = repr(shown)
    assert text.splitlines()[0] == "Table 2"
    assert "47.5 ± 0.2" in text and "ours" in text and "paper" in text


def test_table_text_is_a_plain_grid_when_it_fits():
    ours, _ = _results()
    assert repr(viz.table(ours, formats={"5-shot": "{:.2f}"})).splitlines() == [
        "                  1-shot  5-shot  runs",
        "approach                              ",
        "MAGMA               47.0   80.55    10",
        "Align + Classify    40.2   70.00    10",
    ]
    assert viz.table(ours, index=False).text.splitlines()[0] == " 1-shot  5-shot  runs"


def test_table_row_labels_keep_their_digits_without_float_noise():
    frame = pd.DataFrame({"accuracy": [99.71, 32.2]}, index=pd.Index([0.25, 0.1 + 0.2], name="noise"))
    shown = viz.table(frame)
    assert list(shown.shown.index) == ["0.25", "0.3"] and shown.shown.index.name == "noise"
    assert ">0.25</th>" in shown.to_html() and "0.250000" not in shown.to_html()
    two_levels = pd.DataFrame({"x": [1.0]}, index=pd.MultiIndex.from_tuples([("a", 0.5)], names=["p", "q"]))
    assert list(viz.table(two_levels).shown.index) == [("a", "0.5")]


def test_table_formats_apply_to_html_and_text():
    ours, paper = _results()
    shown = viz.table(ours, paper=paper, formats={"1-shot": "{:.2f}", "runs": "{:d} runs"})
    assert ">47.04</td>" in shown.to_html() and ">10 runs</td>" in shown.to_html()
    assert "47.04" in shown.text and "47.5 ± 0.2" in shown.text
    with pytest.raises(ValueError, match=r"formats names columns that df lacks: \['20-shot'\]"):
        viz.table(ours, formats={"20-shot": "{:.1f}"})


def test_table_text_never_wider_than_the_page():
    wide = pd.DataFrame(np.arange(60.0).reshape(3, 20), columns=[f"a long column name {i}" for i in range(20)])
    text = repr(viz.table(wide, caption="caption " * 30))
    assert max(map(len, text.splitlines())) <= viz.TEXT_WIDTH
    one_long = pd.DataFrame({"sentence": ["word " * 40]}, index=["row"])
    text = viz.table(one_long, width=40).text
    assert max(map(len, text.splitlines())) <= 40
    assert "".join(text.split()).count("word") == 40  # nothing was cut, only wrapped


def test_table_errors():
    ours, paper = _results()
    with pytest.raises(ValueError, match="df must be a pandas DataFrame, got list"):
        viz.table([[1, 2]])
    with pytest.raises(ValueError, match="precision must be an integer >= 0"):
        viz.table(ours, precision=-1)
    with pytest.raises(ValueError, match="paper shares no column with df"):
        viz.table(ours, paper=pd.DataFrame({"20-shot": [1]}, index=["MAGMA"]))
    with pytest.raises(ValueError, match="paper shares no row label with df"):
        viz.table(ours, paper=paper.rename(index={"MAGMA": "CroMA"}))
    with pytest.raises(ValueError, match="paper must be a pandas DataFrame"):
        viz.table(ours, paper={"1-shot": 1})


# -------------------------------------------------------------------------------------- audio
def _read_wav(data: bytes):
    with wave.open(io.BytesIO(data)) as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), frames


def test_wav_bytes_hand_computed():
    rate, channels, width, frames = _read_wav(viz.wav_bytes(np.array([0.0, 0.5, -1.0]), 8000, normalize=False))
    assert (rate, channels, width) == (8000, 1, 2)
    assert frames.tolist() == [0, 16384, -32767]  # round(0.5 * 32767) = round(16383.5) = 16384
    _, _, _, frames = _read_wav(viz.wav_bytes(np.array([[0.0, 0.25, -0.125]]), 8000))
    assert frames.tolist() == [0, 32767, -16384]  # normalized: the peak becomes full scale


def test_wav_bytes_errors():
    with pytest.raises(ValueError, match="rate must be a positive integer"):
        viz.wav_bytes(np.zeros(4), 0)
    with pytest.raises(ValueError, match=r"mono waveform of shape \(n,\) or \(1, n\), got \(2, 4\)"):
        viz.wav_bytes(np.zeros((2, 4)), 8000)
    with pytest.raises(ValueError, match="NaN or infinite"):
        viz.wav_bytes(np.array([0.0, np.nan]), 8000)
    with pytest.raises(ValueError, match="must lie in \\[-1, 1\\] when normalize=False, peak is 2"):
        viz.wav_bytes(np.array([0.0, 2.0]), 8000, normalize=False)


def test_audio_table_keeps_each_label_beside_its_player():
    rng = np.random.default_rng(0)
    clips = [{"number": str(n), "speaker": s, "audio": rng.standard_normal(800), "rate": 8000}
             for n, s in ((38, "Scottish accent"), (12, "default voice"))]
    shown = viz.audio_table(clips, caption="Two spoken numbers")
    page = shown._repr_html_()
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    assert len(rows) == 2
    for row, clip in zip(rows, clips):  # label and player in one row, labels first
        assert row.index(clip["number"]) < row.index(clip["speaker"]) < row.index("<audio controls")
        data = re.search(r'src="data:audio/wav;base64,([^"]+)"', row).group(1)
        rate, _, _, frames = _read_wav(base64.b64decode(data))
        assert rate == 8000 and len(frames) == 800
    assert page.count("<audio controls") == 2 and "<th" in page and "listen" in page
    assert "Two spoken numbers" in page
    assert shown.text.splitlines() == ["Two spoken numbers", "number: 38, speaker: Scottish accent [audio, 0.1 s]",
                                       "number: 12, speaker: default voice [audio, 0.1 s]"]


def test_audio_table_tuples_rate_and_narrow_text():
    clips = [("a label " * 20, np.zeros(1600)), ("b", np.ones(1600))]
    shown = viz.audio_table(clips, rate=16000)
    assert shown.columns == ["clip"]
    assert max(map(len, repr(shown).splitlines())) <= viz.TEXT_WIDTH
    assert "[audio, 0.1 s]" in repr(shown)


def test_audio_table_errors():
    with pytest.raises(ValueError, match="clips must be a non-empty sequence"):
        viz.audio_table([])
    with pytest.raises(ValueError, match=r"clips\[0\] has no sample rate"):
        viz.audio_table([("a", np.zeros(10))])
    with pytest.raises(ValueError, match=r"clips\[0\] has no 'audio' key"):
        viz.audio_table([{"label": "a"}])
    with pytest.raises(ValueError, match=r"clips\[1\] has label columns \['speaker'\], but clips\[0\] has \['number'\]"):
        viz.audio_table([{"number": 1, "audio": np.zeros(4)}, {"speaker": "x", "audio": np.zeros(4)}], rate=8000)
    with pytest.raises(ValueError, match=r"clips\[0\] must be a mapping"):
        viz.audio_table([42], rate=8000)


# ----------------------------------------------------------------------------------- diagrams
def _texts(fig) -> str:
    from matplotlib.text import Text

    return "\n".join(t.get_text() for t in fig.findobj(Text))


@pytest.mark.parametrize("draw, expected", [
    (viz.algorithm_diagram, ["Inner loop 1", "Inner loop 2", "Reptile update 1", "Reptile update 2",
                             "Alignment task", "Source task", "meta-parameters", "\\epsilon"]),
    (viz.data_flow_diagram, ["Meta-train", "Validation", "Meta-test", "labels: none", "score only",
                             "model choice", "not used"]),
    (viz.roadmap_diagram, ["01", "03", "Reptile", "06", "13"]),
])
def test_diagrams_are_complete_readable_and_page_wide(draw, expected):
    fig = draw()
    text = _texts(fig)
    for word in expected:
        assert word in text, word
    assert fig.get_figwidth() <= viz.PAGE_WIDTH
    viz.check_readable(fig)
    fig.savefig(io.BytesIO(), format="png")  # mathtext must parse


def test_roadmap_lists_every_chapter_once_and_checks_input():
    numbers = [n for _, items in viz.CHAPTERS for n, _ in items]
    assert sorted(numbers) == [f"{i:02d}" for i in range(1, 14)]
    fig = viz.roadmap_diagram([("Only part", [("01", "One")])])
    assert "Only part" in _texts(fig)
    with pytest.raises(ValueError, match="no empty part"):
        viz.roadmap_diagram([("Empty", [])])


def test_every_public_name_is_importable_from_the_package():
    """The chapters import from ``magma_teach.viz`` alone, whichever of its modules defines a name."""
    namespace = {}
    exec("from magma_teach.viz import *", namespace)
    assert set(viz.__all__) <= set(namespace) and len(viz.__all__) == len(set(viz.__all__))
