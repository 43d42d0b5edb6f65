"""The book's chapter notebooks are commit-ready: parameterised, Colab-launchable, executed in order.

Every notebook listed in ``_toc.yml`` must have

* exactly one code cell tagged ``parameters`` (papermill injects its overrides after it);
* an "Open in Colab" badge pointing at this notebook in the repository named in ``_config.yml``;
* committed outputs: every code cell executed, execution counts 1, 2, 3, ... in cell order (what a
  top-to-bottom papermill run leaves behind), and no error outputs.

nbval (``pytest --nbval book/``) then checks that re-running the cells reproduces those outputs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _toc_files(node):
    if isinstance(node, dict):
        if "file" in node:
            yield node["file"]
        for key in ("chapters", "sections", "parts"):
            yield from _toc_files(node.get(key, []))
    elif isinstance(node, list):
        for child in node:
            yield from _toc_files(child)


def _notebooks() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    entries = [toc["root"], *_toc_files(toc)]
    paths = [ROOT / (entry.removesuffix(".ipynb") + ".ipynb") for entry in entries]
    return [p for p in paths if p.is_file()]


NOTEBOOKS = _notebooks()


def _repository_url() -> tuple[str, str]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"].rstrip("/"), config["repository"].get("branch", "main")


@pytest.fixture(params=NOTEBOOKS, ids=[p.relative_to(ROOT).as_posix() for p in NOTEBOOKS])
def notebook(request):
    path = request.param
    return path, nbformat.read(path, as_version=4)


def test_toc_lists_notebooks():
    assert NOTEBOOKS, "_toc.yml lists no .ipynb chapter"


def test_one_parameters_cell(notebook):
    path, nb = notebook
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters', found {len(tagged)}"
    assert tagged[0].cell_type == "code", f"{path.name}: the 'parameters' cell must be a code cell"


def test_colab_badge(notebook):
    path, nb = notebook
    url, branch = _repository_url()
    github = url.removeprefix("https://github.com/")
    relative = path.relative_to(ROOT).as_posix()
    target = f"https://colab.research.google.com/github/{github}/blob/{branch}/{relative}"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert target in markdown, f"{path.name}: no Colab badge linking to {target}"
    assert "colab-badge.svg" in markdown, f"{path.name}: the Colab link has no badge image"


def test_outputs_committed_in_order(notebook):
    path, nb = notebook
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells, f"{path.name}: no code cells"
    counts = [c.execution_count for c in code_cells]
    assert None not in counts, (f"{path.name}: code cell {counts.index(None) + 1} was never executed; "
                                f"re-run scripts/execute_book.sh")
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..{len(counts)}: execute top to bottom "
        f"in a fresh kernel (scripts/execute_book.sh)")
    errors = [i for i, c in enumerate(code_cells, 1) if any(o.output_type == "error" for o in c.outputs)]
    assert not errors, f"{path.name}: code cells {errors} have error outputs"
