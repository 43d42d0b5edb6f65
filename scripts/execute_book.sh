#!/usr/bin/env bash
# Re-execute every chapter notebook listed in _toc.yml, in place (quick preset), with
# scripts/run_notebook.py: papermill injects the parameters, nbclient runs the cells.
#
#   scripts/execute_book.sh                  # all chapters
#   scripts/execute_book.sh book/01_theory   # only the chapters named (as written in _toc.yml)
#
# Runs from the repository root whatever the current directory, each notebook with book/ as its
# working directory, with CI=1 so progress bars stay off (their output would break nbval). The
# notebooks' parameters cells default to PRESET = "quick", which is what the committed outputs use;
# nothing is injected unless PRESET is set to something else in the environment. Set PYTHON to the
# interpreter of the environment that has papermill and magma_teach (default: python3), KERNEL to
# the Jupyter kernel name (default: python3). Prints the seconds each chapter took.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
KERNEL="${KERNEL:-python3}"
export CI=1

# The notebook chapters of _toc.yml in book order (scripts/sync_notebooks.py reads the toc), as
# book/x.ipynb, only those named on the command line when any are.
mapfile -t chapters < <("$PYTHON" - "$@" <<'PY'
import sys

sys.path.insert(0, "scripts")
from sync_notebooks import ROOT, chapter_notebooks

wanted = {a.removesuffix(".ipynb") for a in sys.argv[1:]}
for path in chapter_notebooks():
    relative = path.relative_to(ROOT)
    if not wanted or str(relative.with_suffix("")) in wanted:
        print(relative)
PY
)

if [ "${#chapters[@]}" -eq 0 ]; then
    echo "no notebook chapters found in _toc.yml${1:+ matching $*}" >&2
    exit 1
fi

params=()
if [ -n "${PRESET:-}" ] && [ "${PRESET}" != "quick" ]; then
    params=(-p PRESET "$PRESET")
    echo "warning: executing with PRESET=$PRESET; the committed outputs use the quick preset" >&2
fi

total_start=$(date +%s.%N)
for nb in "${chapters[@]}"; do
    start=$(date +%s.%N)
    "$PYTHON" scripts/run_notebook.py "$nb" "$nb" -k "$KERNEL" ${params[@]+"${params[@]}"}
    end=$(date +%s.%N)
    awk -v n="$nb" -v a="$start" -v b="$end" 'BEGIN { printf "%-40s %6.1f s\n", n, b - a }'
done
awk -v a="$total_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%-40s %6.1f s\n", "total", b - a }'
