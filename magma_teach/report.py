"""Tables for people: each experiment's tidy rows laid out the way the paper prints them."""

from __future__ import annotations

import pandas as pd

from magma_teach.experiments import ExperimentResult, paper_layout
from magma_teach.paper import beside_paper


def retrieval_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 3: one row per (K, experiment) with R@1/5/10 in %, median rank and cosine loss."""
    cols = ["K", "experiment", "R@1", "R@5", "R@10", "rank", "cos", "concept R@1"]
    return rows[[c for c in cols if c in rows]].round({"R@1": 1, "R@5": 1, "R@10": 1, "rank": 1, "cos": 3,
                                                        "concept R@1": 1})


def noise_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Figure 3 as a table: accuracy (mean ± std) per approach and k, one column per noise rate."""
    cell = rows["mean"].map("{:.1f}".format) + " ± " + rows["std"].map("{:.1f}".format)
    return rows.assign(cell=cell).pivot_table(index=["approach", "shots"], columns="noise", values="cell",
                                              aggfunc="first")


def format_result(result: ExperimentResult) -> str:
    """The result as printable text: the paper-style table (and our numbers beside the paper's)."""
    rows, name = result.rows, result.experiment
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        if name in ("image-audio", "text-speech", "text-image", "strong-weak"):
            text = paper_layout(rows).to_string(index=False)
            if name != "strong-weak":
                beside = beside_paper(rows, name, result.data)
                text += "\n\nBeside the paper:\n" + beside.to_string(index=False) + "\n" + beside.attrs["note"]
            if "predictions" in result.extras:
                text += "\n\nSample predictions after 5 shots:\n" + result.extras["predictions"].to_string(index=False)
            return text
        if name == "retrieval":
            return retrieval_table(rows).to_string(index=False)
        if name == "noisy-labels":
            return noise_table(rows).to_string()
        return rows.round(1).to_string(index=False)
