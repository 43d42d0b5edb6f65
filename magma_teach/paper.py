"""The paper's reported numbers, to print beside ours.

The datasets differ: the paper used CIFAR-10/100 → ESC-50 (image → audio), CMU Wilderness (text →
speech, 99 languages) and Yummly-28K recipes (text → image); this package's offline benchmarks are
handwritten numbers → eSpeak NG speech and wordfreq sentences → eSpeak NG speech in 41 languages.
The side-by-side tables show whether the same *pattern* appears, not the same values;
:func:`pattern_sentences` says in words, computed from both sets of numbers, where the patterns agree.
"""

from __future__ import annotations

import pandas as pd

NOTE = ("Paper numbers come from different datasets (CIFAR-10/100 -> ESC-50, CMU Wilderness, Yummly-28K); "
        "ours from the offline numbers/languages benchmarks. Compare patterns, not values. Our 'Random init' "
        "row stands where the paper's 'Unsup. pre-training' row does, whose audio encoder was pre-trained on "
        "AudioSet.")
NOTE_FULL = ("Paper numbers come from the authors' runs; ours from this package on the full data (FLEURS in "
             "place of CMU Wilderness; our own class splits, preset and seeds). Compare patterns, not values.")

# approach -> (1-shot, 5-shot, 10-shot) as (mean, std), #target samples, #target labels.
# The paper's "Unsup. pre-training" row fine-tuned an audio encoder pre-trained (without labels) on
# AudioSet; offline there is no such encoder, so our row of the same place starts from random weights
# and is named for that: "Random init". The poster's "Pre-training" row stands under the same name.
RANDOM_INIT = "Random init"
TABLE2_IMAGE_AUDIO = {
    RANDOM_INIT: ([(44.2, 0.8), (72.3, 0.3), (77.4, 1.7)], 0, 0),
    "Unsup. meta-learning (reconstruct)": ([(36.3, 1.8), (67.3, 0.9), (76.6, 2.1)], 920, 0),
    "Align + Classify": ([(45.3, 0.8), (73.9, 2.1), (78.8, 0.1)], 920, 0),
    "Align + Meta Classify": ([(47.2, 0.3), (77.1, 0.7), (80.4, 0.0)], 920, 0),
    "MAGMA": ([(47.5, 0.2), (85.9, 0.7), (92.7, 0.4)], 920, 0),
    "Oracle": ([(45.9, 0.2), (89.3, 0.4), (94.5, 0.3)], 920, 920),
}
TABLE4_TEXT_SPEECH = {
    "Supervised learning": ([(55.2, 8.6), (73.1, 3.4), (84.3, 0.1)], 0, 0),
    "Unsup. meta-learning (reconstruct)": ([(61.5, 4.4), (83.5, 4.0), (88.5, 2.1)], 4395, 0),
    "Align + Classify": ([(61.1, 6.0), (74.8, 2.1), (86.2, 0.7)], 4395, 0),
    "Align + Meta Classify": ([(65.6, 6.1), (89.9, 1.5), (93.0, 0.5)], 4395, 0),
    "MAGMA": ([(67.9, 6.6), (90.6, 1.5), (93.2, 0.2)], 4395, 0),
    "Oracle": ([(61.3, 11.2), (77.0, 0.3), (87.5, 0.6)], 4395, 4395),
}
# The poster's recipe table (Yummly-28K, text -> image); its "Pre-training" and "CroMA" rows under our names.
POSTER_RECIPES = {
    RANDOM_INIT: ([(33.1, 2.8), (36.4, 3.5), (49.0, 3.8)], 0, 0),
    "Unsup. meta-learning (reconstruct)": ([(37.4, 0.6), (41.7, 3.7), (49.0, 1.0)], 5131, 0),
    "Align + Classify": ([(37.1, 3.0), (40.0, 2.7), (47.8, 6.6)], 5131, 0),
    "Align + Meta Classify": ([(39.4, 2.5), (40.0, 2.3), (48.8, 7.8)], 5131, 0),
    "MAGMA": ([(39.7, 1.3), (47.1, 3.3), (51.1, 2.1)], 5131, 0),
    "Oracle": ([(38.9, 2.1), (42.1, 1.4), (47.9, 5.6)], 5131, 5131),
}
# K -> experiment -> (R@1, R@5, R@10, median rank, cosine loss)
TABLE3_RETRIEVAL = {
    5: {"No align": (1.0, 2.0, 5.5, 101, 0.428), "Align": (2.0, 5.5, 8.5, 103, 0.272),
        "MAGMA": (4.0, 19.5, 39.0, 13, 0.003)},
    10: {"No align": (0.5, 3.0, 4.5, 101, 0.399), "Align": (1.5, 11.0, 18.5, 52, 0.222),
         "MAGMA": (3.5, 17.5, 35.0, 15, 0.004)},
}
SHOTS = (1, 5, 10)


def paper_rows(table: dict) -> pd.DataFrame:
    """A reported few-shot table as tidy rows: approach, shots, mean, std, target_samples, target_labels."""
    rows = [{"approach": a, "shots": k, "mean": m, "std": s, "target_samples": n, "target_labels": l}
            for a, (scores, n, l) in table.items() for k, (m, s) in zip(SHOTS, scores)]
    return pd.DataFrame(rows)


def beside_paper(ours: pd.DataFrame, experiment: str, data: str = "offline") -> pd.DataFrame:
    """Our few-shot rows next to the paper's for ``"image-audio"``, ``"text-speech"`` or ``"text-image"``.

    Returns one row per (approach, shots) with ``ours`` and ``paper`` as "mean ± std" strings; the
    frame's ``attrs["note"]`` says how the data differ (``data``: ``"offline"`` or ``"full"``).
    """
    tables = {"image-audio": TABLE2_IMAGE_AUDIO, "text-speech": TABLE4_TEXT_SPEECH, "text-image": POSTER_RECIPES}
    table = tables.get(experiment)
    if table is None:
        raise ValueError(f"experiment must be one of {', '.join(tables)}, got {experiment!r}")
    paper = paper_rows(table)
    fmt = lambda d: d.assign(value=d["mean"].map("{:.1f}".format) + " ± " + d["std"].map("{:.1f}".format))
    merged = fmt(ours)[["approach", "shots", "value"]].merge(
        fmt(paper)[["approach", "shots", "value"]], on=["approach", "shots"], how="outer",
        suffixes=(" (ours)", " (paper)"), sort=False)
    order = {a: i for i, a in enumerate(dict.fromkeys([*ours["approach"], *paper["approach"]]))}
    merged = merged.sort_values(["approach", "shots"], key=lambda col: col.map(order) if col.name == "approach" else col)
    merged = merged.reset_index(drop=True).fillna("—")  # a k one side did not run
    merged.attrs["note"] = NOTE_FULL if data == "full" else NOTE
    return merged


PAPER_TABLES = {"image-audio": ("Table 2", TABLE2_IMAGE_AUDIO), "text-speech": ("Table 4", TABLE4_TEXT_SPEECH),
                "text-image": ("the poster's recipe table", POSTER_RECIPES)}


def pattern_sentences(ours: pd.DataFrame, experiment: str) -> list[str]:
    """One sentence per comparison with the paper, computed from our rows and the paper's numbers.

    Few-shot tables (``image-audio``, ``text-speech``, ``text-image``): which approach without target
    labels leads at each k, ours against the paper's; and whether MAGMA is ahead of, tied with or
    behind the Oracle (which reads target labels) at each k, a difference inside the spread being a
    tie. ``retrieval``: the order of No align, Align and MAGMA by R@1 at each K. Only k (or K) values
    both sides have are compared; other experiments have no paper numbers here and give ``[]``.
    """
    if experiment in PAPER_TABLES:
        name, table = PAPER_TABLES[experiment]
        paper = paper_rows(table)
        return [_leader_sentence(ours, paper, name), _oracle_sentence(ours, paper, name)]
    if experiment == "retrieval":
        return [_retrieval_sentence(ours)]
    return []


def _common(ours: pd.DataFrame, paper: pd.DataFrame, column: str) -> list:
    return sorted(set(ours[column]) & set(paper[column]))


def _ks(values, symbol: str = "k") -> str:
    return f"{symbol} = " + ", ".join(str(v) for v in values)


def _leader_sentence(ours: pd.DataFrame, paper: pd.DataFrame, name: str) -> str:
    """Which approach without target labels has the best mean at each k: same or not, with our numbers."""
    unlabeled = set(paper.loc[paper["target_labels"] == 0, "approach"]) & set(ours["approach"])
    if "target_labels" in ours:
        unlabeled &= set(ours.loc[ours["target_labels"] == 0, "approach"])
    shots = _common(ours, paper, "shots")
    if not shots or not unlabeled:
        return f"No k or approach in common with the paper's {name}, so no pattern to compare."
    same, different = [], []
    for k in shots:
        mine = ours[(ours["shots"] == k) & ours["approach"].isin(unlabeled)].set_index("approach")
        theirs = paper[(paper["shots"] == k) & paper["approach"].isin(unlabeled)].set_index("approach")
        lead, paper_lead = mine["mean"].idxmax(), theirs["mean"].idxmax()
        if lead == paper_lead:
            same.append((k, lead))
        else:
            gap = mine.loc[lead, "mean"] - mine.loc[paper_lead, "mean"]
            spread = max(mine.loc[lead, "std"], mine.loc[paper_lead, "std"])
            within = ", a tie within the spread" if gap <= spread else ""
            different.append(f"k = {k}: ours is {lead} ({mine.loc[lead, 'mean']:.1f}), the paper's is {paper_lead} "
                             f"(ours: {mine.loc[paper_lead, 'mean']:.1f}{within})")
    head = f"Best approach without target labels, against the paper's {name}: "
    if not different:
        leaders = "; ".join(f"{a} at k = {k}" for k, a in same)
        return head + f"the same at every k ({leaders})."
    if not same:
        return head + "different at every k (" + "; ".join(different) + ")."
    leaders = ", ".join(f"{a} at k = {k}" for k, a in same)
    return head + f"the same at {_ks([k for k, _ in same])} ({leaders}), different at " + "; ".join(different) + "."


def _oracle_sentence(ours: pd.DataFrame, paper: pd.DataFrame, name: str) -> str:
    """MAGMA ahead of, tied with or behind the Oracle at each k (:func:`~magma_teach.evaluate.verdict`,
    on each side's own mean ± std), ours against the paper's."""
    from magma_teach.evaluate import verdict

    if not {"MAGMA", "Oracle"} <= set(ours["approach"]):
        return f"MAGMA or the Oracle is missing from our rows: no order to compare with the paper's {name}."
    shots = _common(ours, paper, "shots")
    if not shots:
        return f"No k in common with the paper's {name}."

    def place(frame, k) -> str:  # the book's rule: a difference inside the larger spread is a tie
        at = frame[frame["shots"] == k].set_index("approach")
        return verdict(*at.loc["MAGMA", ["mean", "std"]], *at.loc["Oracle", ["mean", "std"]])

    match = [k for k in shots if place(ours, k) == place(paper, k)]
    differ = [k for k in shots if k not in match]
    parts = [f"{place(ours, k)} at k = {k} in both" for k in match]
    parts += [f"{place(ours, k)} at k = {k} in ours but {place(paper, k)} in the paper" for k in differ]
    verdict = ("the same pattern as" if not differ else "a different pattern from" if not match
               else "partly the pattern of")
    return (f"MAGMA against the Oracle (which reads target labels): {'; '.join(parts)}; "
            f"{verdict} the paper's {name}.")


RELATION = {"ahead": "ahead of", "tie": "tied with", "behind": "behind"}


def _retrieval_sentence(ours: pd.DataFrame) -> str:
    """No align, Align and MAGMA compared pairwise by R@1 at each K, ours against Table 3.

    Each pair of ours gets :func:`~magma_teach.evaluate.verdict` on mean ± ``R@1 std`` (0 where the rows
    have no spread), so a difference inside the spread is a tie; the paper's numbers have no spread,
    so only equal values tie there. A K is "the same" when every pair's verdict matches the paper's.
    """
    from itertools import combinations

    from magma_teach.evaluate import verdict

    ks = sorted(set(ours["K"]) & set(TABLE3_RETRIEVAL))
    if not ks:
        return (f"No K in common with the paper's Table 3 (ours: {_ks(sorted(set(ours['K'])), 'K')}; "
                f"paper: {_ks(sorted(TABLE3_RETRIEVAL), 'K')}), so no pattern to compare.")
    same, different = [], []
    for k in ks:
        mine = ours[ours["K"] == k].set_index("experiment")
        spread = mine["R@1 std"] if "R@1 std" in mine else pd.Series(0.0, index=mine.index)
        theirs = pd.Series({e: v[0] for e, v in TABLE3_RETRIEVAL[k].items()}).sort_values(ascending=False, kind="stable")
        names = [e for e in theirs.index if e in mine.index]  # in the paper's order, best first
        paper_order = " > ".join(names)
        moved = []
        for a, b in combinations(names, 2):
            ours_says = verdict(mine.loc[a, "R@1"], spread[a], mine.loc[b, "R@1"], spread[b])
            if ours_says != verdict(theirs[a], 0.0, theirs[b], 0.0):
                moved.append(f"{a} {RELATION[ours_says]} {b}")
        if moved:
            different.append(f"K = {k} (ours: {', '.join(moved)}; the paper's {paper_order})")
        else:
            same.append(f"K = {k} ({paper_order})")
    text = "Order by R@1 against the paper's Table 3 (a difference inside our spread is a tie): "
    text += "; ".join(filter(None, ["the same at " + ", ".join(same) if same else "",
                                     "different at " + ", ".join(different) if different else ""]))
    return text + "."
