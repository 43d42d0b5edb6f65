"""Diagrams drawn by matplotlib alone: Algorithm 1, the data flow of a split, and the book's roadmap."""

from __future__ import annotations

from magma_teach.viz.style import PAGE_WIDTH, ROLE


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
