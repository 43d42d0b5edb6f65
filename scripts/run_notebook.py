"""Execute one chapter notebook with parameters, the way the book's scripts do.

papermill injects the parameters (a cell after the one tagged ``parameters``), and nbclient then runs
every cell in a fresh kernel with the notebook's folder as working directory. Executing through
papermill itself hung on chapter 11's widget cell (the kernel idle, papermill's client waiting), while
nbclient, which nbval also uses, runs it; hence the two steps.

    python scripts/run_notebook.py book/05_image_audio.ipynb book/05_image_audio.ipynb
    python scripts/run_notebook.py book/05_image_audio.ipynb /tmp/05_seed1.ipynb -p SEED 1

The executed notebook is written to OUT even when a cell fails (with the error as that cell's output),
and the script then exits 1 naming the cell; ``-p NAME VALUE`` takes VALUE as JSON when it parses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat
import papermill
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync_notebooks import ROOT  # noqa: E402


class NotebookFailed(RuntimeError):
    """A cell raised; the message names the cell and the error."""


def execute(source: Path, target: Path, parameters: dict | None = None, kernel: str = "python3",
            timeout: int = 3600) -> None:
    """Execute ``source`` with ``parameters`` into ``target``; raises :class:`NotebookFailed`."""
    source, target = Path(source), Path(target)
    prepared = papermill.execute_notebook(str(source), None, parameters=parameters or {},
                                          prepare_only=True, kernel_name=kernel, progress_bar=False)
    notebook = nbformat.from_dict(prepared)
    # papermill records the paths it was given; a stored chapter must not carry this machine's folders
    notebook.metadata["papermill"].update(input_path=portable(source), output_path=portable(target))
    client = NotebookClient(notebook, timeout=timeout, kernel_name=kernel,
                            resources={"metadata": {"path": str(source.parent)}})
    try:
        client.execute()
    except CellExecutionError as error:
        failed = next((i for i, c in enumerate(notebook.cells) if c.cell_type == "code"
                       and any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
        raise NotebookFailed(f"{source.name}: cell {failed} raised {error.ename}: {error.evalue[:200]}") from None
    finally:
        nbformat.write(notebook, str(target))


def portable(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it, else its name alone: never a machine's folder."""
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a parameter (repeatable); VALUE is JSON when it parses")
    parser.add_argument("-k", "--kernel", default="python3")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        parser.error(f"no notebook at {args.source}")
    try:
        execute(args.source, args.target, {name: _value(value) for name, value in args.p}, args.kernel)
    except NotebookFailed as failure:
        print(failure, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
