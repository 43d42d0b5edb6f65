#!/usr/bin/env bash
# The device check of issue 14 in one call, well inside 8 minutes on one GPU (H100 / H200):
#
#   env      torch, CUDA, the card, and the Python packages the later stages need (wheels carried in
#            .whl/ are installed first, into a folder of their own)
#   data     the full-preset offline benchmarks (numbers, languages) generated on the CPU, in the
#            background while tests, chapter and speed use the GPU
#   tests    the unit tests marked `cuda` (pytest -m cuda), compiled-vs-eager on CUDA among them
#   chapter  book/02_contrastive_alignment.ipynb executed with papermill on DEVICE="cuda"; the executed
#            copy goes to $OUT, never over the book's own file
#   speed    benchmarks/reptile_speed.py at T = 16 and 64: sequential reference, eager and fast path
#   runs     `python -m magma_teach run image-audio --preset full`, then `run text-speech`, seed after
#            seed while their share of the time lasts (each run trains every approach)
#
# Every stage runs under `timeout` (SIGINT first, so pytest and the CLI stop cleanly), is timed, and
# may fail without stopping the others; a table of all stages is printed last. What comes back from
# $OUT is at most 8 files, so logs and result files are bundled into results.tar.gz.
#
#   bash benchmarks/gpu_check.sh                 # all stages, on the GPU
#   bash benchmarks/gpu_check.sh speed runs      # only the stages named
#   bash benchmarks/gpu_check.sh --dry-run       # the same stages on the CPU at tiny sizes (checks the script)
#   bash benchmarks/gpu_check.sh --fetch-wheels  # on a machine with internet: download into .whl/ the
#                                                # wheels the GPU image lacks (Python 3.12, x86-64)
#
# Budgets in seconds (environment): TOTAL_S (default 460), TESTS_S (150), CHAPTER_S (60), SPEED_S (120);
# the runs share what is left (a full-preset run likely needs a call of its own: `TOTAL_S=560 ... runs`).
# OUT: the results folder (default: a new folder under /tmp). Carry .whl (see --fetch-wheels) with the call.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
DRY=0
FETCH=0
ONLY=()
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        --fetch-wheels) FETCH=1 ;;
        env|data|tests|chapter|speed|runs) ONLY+=("$arg") ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$arg' (stages: env data tests chapter speed runs; --dry-run, --fetch-wheels)" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-python3}

# ---------------------------------------------------------------- --fetch-wheels (run where pip reaches PyPI)
# What the stages import beyond the GPU image (KINDS.md lists the image's packages): the speech and
# word-list generators of the offline benchmarks, pooch, and papermill with a Jupyter kernel.
WHEELS="espeakng-loader wordfreq pooch papermill ipykernel"
# Already on the image: their wheels are dropped after pip resolves the dependencies (one version each).
ON_IMAGE="numpy requests click pyyaml tqdm aiohttp aiosignal aiohappyeyeballs frozenlist multidict yarl propcache
attrs packaging psutil pygments python_dateutil six regex msgpack typing_extensions urllib3 idna certifi
charset_normalizer jinja2 markupsafe filelock fsspec setuptools wheel pip anyio h11 httpcore httpx sniffio"
if (( FETCH )); then
    mkdir -p .whl
    grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    $PY -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl $WHEELS || exit 1
    for name in $ON_IMAGE; do
        rm -f .whl/"$name"-[0-9]*.whl .whl/"${name//_/-}"-[0-9]*.whl
    done
    # wordfreq's wheel is 55 MB (every language's large word list), too much for the 64 MiB the device
    # tool carries. The languages benchmark only calls top_n_list(code, n), so the lists it can ask for
    # are saved from that very wheel (WORDFREQ_TOP words per language) and a stand-in module serves them
    # there (wordfreq_stand_in below); it refuses any other call, and any n beyond what it holds.
    wheel=$(ls .whl/wordfreq-[0-9]*.whl 2>/dev/null | head -n 1)
    if [[ -n $wheel ]]; then
        tmp=$(mktemp -d)
        $PY -m zipfile -e "$wheel" "$tmp" && PYTHONPATH="$tmp" $PY - "${WORDFREQ_TOP:-10000}" "$(basename "$wheel")" <<'PY' || exit 1
import gzip, json, sys
import wordfreq
from magma_teach.data.languages import LANGUAGES

n, wheel = int(sys.argv[1]), sys.argv[2]
lists = {code: wordfreq.top_n_list(code, n) for code in sorted(LANGUAGES)}
lists["__version__"] = wheel.split("-")[1]  # wordfreq-<version>-py3-none-any.whl
with gzip.open(".whl/wordfreq_top.json.gz", "wt", encoding="utf-8") as f:
    json.dump(lists, f, ensure_ascii=False)
print(f"saved the top {n} words of {len(lists) - 1} languages from {wordfreq.__file__} ({wheel})")
PY
        rm -rf "$tmp"
        rm -f .whl/wordfreq-[0-9]*.whl .whl/ftfy-[0-9]*.whl .whl/langcodes-[0-9]*.whl .whl/locate-[0-9]*.whl \
            .whl/language_data-[0-9]*.whl .whl/marisa_trie-[0-9]*.whl
    fi
    echo "wheels in .whl/: $(ls .whl/*.whl | wc -l), $(du -sh .whl | cut -f1) (the device tool carries at most 64 MiB)"
    exit 0
fi

# ---------------------------------------------------------------- settings
if [[ -z "${OUT:-}" ]]; then OUT=$(mktemp -d /tmp/gpu_check.XXXXXX); fi
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/gpu_check_work.XXXXXX)  # everything that is bundled, not returned file by file
export OUT WORK ROOT PY DRY
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export MAGMA_TEACH_CACHE=${MAGMA_TEACH_CACHE:-$WORK/cache}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if (( DRY )); then
    export DEVICE=cpu PRESET=tiny SPEED_ARGS="--tiny --tasks 2 --repeats 2 --warmup 1 --no-check" RUN_SEEDS=${RUN_SEEDS:-1}
    TOTAL_S=${TOTAL_S:-1500}; TESTS_S=${TESTS_S:-200}; CHAPTER_S=${CHAPTER_S:-400}; SPEED_S=${SPEED_S:-400}
else
    # T = 64 first: the issue's targets are at T = 64, and the JSON is written after every row.
    export DEVICE=cuda PRESET=full SPEED_ARGS="--tasks 64 16 --repeats 5 --warmup 3 --no-check"
    TOTAL_S=${TOTAL_S:-460}; TESTS_S=${TESTS_S:-150}; CHAPTER_S=${CHAPTER_S:-60}; SPEED_S=${SPEED_S:-120}
fi
# Wheels carried in .whl/ (see --fetch-wheels) go to a folder of their own, ahead on the path.
WHEEL_NOTE="no wheels carried"
if [[ -d .whl ]] && ls .whl/*.whl >/dev/null 2>&1; then
    if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl; then
        WHEEL_NOTE="installed $(ls .whl/*.whl | wc -l) carried wheels"
        export PYTHONPATH="$WORK/site:$PYTHONPATH" PATH="$WORK/site/bin:$PATH"
    else
        WHEEL_NOTE="installing the carried wheels failed"
    fi
fi
wordfreq_stand_in() {  # a module `wordfreq` serving the saved lists, where the real one is missing
    mkdir -p "$WORK/site/wordfreq"
    cp .whl/wordfreq_top.json.gz "$WORK/site/wordfreq/top.json.gz"
    cat > "$WORK/site/wordfreq/__init__.py" <<'PY'
"""Stand-in for wordfreq on a machine without it (benchmarks/gpu_check.sh): top_n_list only, from lists
that `gpu_check.sh --fetch-wheels` saved from the real wordfreq; it holds the first N words of each language."""
import gzip
import json
import os

with gzip.open(os.path.join(os.path.dirname(__file__), "top.json.gz"), "rt", encoding="utf-8") as _f:
    _LISTS = json.load(_f)
__version__ = _LISTS.pop("__version__", "")


def top_n_list(lang, n, wordlist="best", ascii_only=False):
    if wordlist != "best" or ascii_only or lang not in _LISTS or n > len(_LISTS[lang]):
        raise ValueError(f"this stand-in for wordfreq holds the 'best' list of {sorted(_LISTS)} up to "
                         f"{min(map(len, _LISTS.values()))} words; asked for {lang!r}, n={n}, {wordlist!r}")
    return _LISTS[lang][:n]
PY
}
if [[ -f .whl/wordfreq_top.json.gz ]] && ! $PY -c "import wordfreq" 2>/dev/null; then
    wordfreq_stand_in
    export PYTHONPATH="$WORK/site:$PYTHONPATH"
    WHEEL_NOTE="$WHEEL_NOTE; wordfreq stand-in from saved lists"
fi
export WHEEL_NOTE
START=$(date +%s)
DEADLINE=$((START + TOTAL_S))
STAGES_TSV=$WORK/stages.tsv
: > "$STAGES_TSV"

# wanted STAGE: no stage named on the command line, or this one (runs-* answer to "runs"; the data
# stage also to "runs", which reads its cache).
wanted() {
    (( ${#ONLY[@]} == 0 )) && return 0
    local s
    for s in "${ONLY[@]}"; do
        [[ $s == "${1%%-*}" || ($1 == data && $s == runs) ]] && return 0
    done
    return 1
}
left() { echo $((DEADLINE - $(date +%s))); }

# stage NAME BUDGET_S FUNCTION: run FUNCTION under timeout (at most BUDGET_S and what is left), record
# status, exit code and seconds in stages.tsv. A stage never stops the script.
stage() {
    local name=$1 budget=$2 fn=$3 rest status rc t0 t1 ms
    wanted "$name" || return 0
    rest=$(left)
    (( budget > rest )) && budget=$rest
    if (( budget < 10 )); then
        printf '%s\tskipped\t-\t0\tno time left\n' "$name" >> "$STAGES_TSV"; return 0
    fi
    echo "=== $name (up to ${budget}s) $(date +%T)"
    t0=$(date +%s%N)
    timeout -s INT -k 15 "$budget" bash -c "$fn"
    rc=$?
    t1=$(date +%s%N)
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; 3) status=skipped ;; *) status=failed ;; esac
    ms=$(( (t1 - t0) / 1000000 ))
    printf '%s\t%s\t%s\t%d.%03d\t\n' "$name" "$status" "$rc" $((ms / 1000)) $((ms % 1000)) >> "$STAGES_TSV"
    echo "=== $name: $status (exit $rc)"
}

# A stage function that exits 3 is "skipped": something it needs is missing (said on its last line).
need_modules() {  # need_modules MOD...: exit 3 naming the missing ones
    local missing
    missing=$($PY - "$@" <<'PY'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
PY
)
    if [[ -n "$missing" ]]; then echo "missing Python modules: $missing (carry wheels: bash benchmarks/gpu_check.sh --fetch-wheels)"; exit 3; fi
}
export -f need_modules

# ---------------------------------------------------------------- stages
env_stage() {
    {
        date -u +"%F %T UTC"
        echo "dry run: $DRY; device: $DEVICE; preset: $PRESET; $WHEEL_NOTE"
        command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
        $PY - <<'PY'
import importlib.util, os, platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, "
      f"cores: {os.cpu_count()}")
if torch.cuda.is_available():
    print("card:", torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
mods = ["magma_teach", "pandas", "sklearn", "matplotlib", "espeakng_loader", "wordfreq", "pooch", "papermill",
        "ipykernel", "triton"]
print("missing modules:", " ".join(m for m in mods if importlib.util.find_spec(m) is None) or "none")
PY
    } 2>&1 | tee "$OUT/env.txt"
}

data_stage() {  # both benchmarks at once, in the background of the GPU stages (the runs read the cache)
    need_modules espeakng_loader wordfreq
    local rc=0
    $PY -m magma_teach data numbers --preset "$1" > "$WORK/data_numbers.log" 2>&1 &
    local a=$!
    $PY -m magma_teach data languages --preset "$1" > "$WORK/data_languages.log" 2>&1 &
    local b=$!
    wait $a || rc=$?
    wait $b || rc=$?
    tail -n 3 "$WORK"/data_*.log
    exit $rc
}
export -f data_stage env_stage

tests_stage() {
    need_modules pytest
    local marker=cuda
    # The test files whose tests take `device` (tests/conftest.py): collection stays cheap and needs
    # nothing the GPU image lacks.
    $PY -m pytest -q -p no:nbval -p no:cacheprovider -o addopts="" -m "$marker" -rfEs --durations=10 \
        --junitxml="$WORK/pytest_cuda.xml" tests/test_compiled.py tests/test_reptile.py tests/test_encoders.py \
        tests/test_losses.py tests/test_magma.py 2>&1 | tee "$OUT/tests.log"
    exit "${PIPESTATUS[0]}"
}

chapter_stage() {
    local nb=book/02_contrastive_alignment.ipynb name
    name=$(basename "$nb" .ipynb).$DEVICE.ipynb
    if $PY -c "import papermill, ipykernel" 2>/dev/null; then
        # A kernel of this very Python (with this PYTHONPATH), in a folder of this check, not the user's.
        $PY -m ipykernel install --prefix "$WORK/jupyter" --name python3 >/dev/null 2>&1
        export JUPYTER_PATH="$WORK/jupyter/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
        $PY -m papermill "$nb" "$OUT/$name" -p DEVICE "$DEVICE" --cwd book -k python3 --log-output \
            > "$WORK/chapter.log" 2>&1
        local rc=$?
        tail -n 5 "$WORK/chapter.log"
        exit $rc
    fi
    # Without papermill: the chapter's code cells as one script, DEVICE set after its parameters cell
    # (magics and shell lines left out), so the chapter's code still meets the GPU.
    echo "papermill or ipykernel missing: running the chapter's code cells as a script"
    $PY - "$nb" "$WORK/chapter.py" "$DEVICE" <<'PY'
import json, sys
nb, out, device = sys.argv[1:]
cells = json.load(open(nb))["cells"]
lines = ["display = print  # IPython's display, outside a kernel"]
for cell in cells:
    if cell["cell_type"] != "code":
        continue
    src = "".join(cell["source"])
    lines += ["# " + l if l.lstrip().startswith(("%", "!")) else l for l in src.splitlines()]
    if "parameters" in cell.get("metadata", {}).get("tags", []):
        lines.append(f"DEVICE = {device!r}")
open(out, "w").write("\n".join(lines) + "\n")
PY
    (cd book && $PY "$WORK/chapter.py") > "$WORK/chapter.log" 2>&1
    local rc=$?
    tail -n 5 "$WORK/chapter.log"
    exit $rc
}

speed_stage() {
    # shellcheck disable=SC2086
    $PY benchmarks/reptile_speed.py --device "$DEVICE" --methods sequential eager fast $SPEED_ARGS \
        --json "$OUT/reptile_speed.json" 2>&1 | tee "$WORK/speed.log"
    exit "${PIPESTATUS[0]}"
}

runs_stage() {  # runs_stage EXPERIMENT: seed 0, 1, ... until this stage's timeout stops it (or RUN_SEEDS runs)
    need_modules espeakng_loader wordfreq
    local exp=$1 seed=0 t0 rc
    while (( seed < ${RUN_SEEDS:-1000} )); do
        t0=$(date +%s)
        echo "--- $exp seed $seed $(date +%T)" >> "$OUT/runs.log"
        $PY -m magma_teach run "$exp" --preset "$PRESET" --device "$DEVICE" --seed "$seed" \
            --out "$WORK/results" --force >> "$OUT/runs.log" 2>&1
        rc=$?
        echo "--- $exp seed $seed: exit $rc after $(( $(date +%s) - t0 ))s" >> "$OUT/runs.log"
        (( rc == 0 )) || exit $rc
        printf '%s\t%s\t%s\n' "$exp" "$seed" "$(( $(date +%s) - t0 ))" >> "$WORK/runs_done.tsv"
        seed=$((seed + 1))
    done
}
export -f tests_stage chapter_stage speed_stage runs_stage

echo "gpu_check: results in $OUT; $(date +%T); budget ${TOTAL_S}s"
stage env 60 env_stage
DATA_PID=
if wanted data || wanted runs; then
    if [[ $PRESET == full ]]; then  # tiny runs build their own small data
        ( stage data $(( TOTAL_S / 2 )) "data_stage $PRESET" ) &
        DATA_PID=$!
    fi
fi
stage tests "$TESTS_S" tests_stage
stage chapter "$CHAPTER_S" chapter_stage
stage speed "$SPEED_S" speed_stage
[[ -n $DATA_PID ]] && wait "$DATA_PID"
# The runs share what is left: the first gets half, the second the rest.
stage runs-image-audio $(( $(left) / 2 )) "runs_stage image-audio"
stage runs-text-speech "$(left)" "runs_stage text-speech"

# ---------------------------------------------------------------- summary (printed last)
touch "$WORK/runs_done.tsv"
tar -czf "$OUT/results.tar.gz" -C "$WORK" --exclude=./cache --exclude=./site --exclude=./jupyter . 2>/dev/null
$PY - "$STAGES_TSV" "$OUT" "$WORK/runs_done.tsv" "$(( $(date +%s) - START ))" <<'PY' | tee "$OUT/gpu_check.txt"
import json, pathlib, re, sys

stages_tsv, out, runs_done, total = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [line.rstrip("\n").split("\t") for line in open(stages_tsv) if line.strip()]
done = [line.split("\t") for line in open(runs_done) if line.strip()]


def note(name):
    if name == "tests" and (out / "tests.log").exists():
        tail = [l for l in (out / "tests.log").read_text().splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", l)]
        return tail[-1].strip("= ") if tail else ""
    if name == "speed" and (out / "reptile_speed.json").exists():
        speed = json.loads((out / "reptile_speed.json").read_text())
        parts = []
        for t, r in speed["ratios"].items():
            rates = {row["method"]: row["tasks_per_s"] for row in speed["rows"] if f"T={row['T']}" == t}
            parts.append(f"{t}: " + " ".join(f"{m} {v:,.0f}/s" if v >= 100 else f"{m} {v:.3g}/s" for m, v in rates.items())
                         + "; " + " ".join(f"{k} {v}x" for k, v in r.items()))
        return " | ".join(parts)
    if name.startswith("runs-"):
        exp = name[5:]
        mine = [d for d in done if d[0] == exp]
        return (f"{len(mine)} complete run(s), seconds: " + " ".join(d[2].strip() for d in mine)) if mine else "no complete run"
    return ""


lines = [f"{'stage':<18} {'status':<8} {'exit':>4} {'seconds':>8}  notes"]
summary = []
for name, status, rc, seconds, *_ in rows:
    if name.startswith("runs-") and status == "timeout" and any(d[0] == name[5:] for d in done):
        status = "time-up"  # the time limit ended a loop of runs, after at least one complete run
    lines.append(f"{name:<18} {status:<8} {rc:>4} {float(seconds):>8.1f}  {note(name)}")
    summary.append({"stage": name, "status": status, "exit": rc, "seconds": float(seconds), "notes": note(name)})
lines.append(f"total {total} s; files in {out}")
(out / "gpu_check.json").write_text(json.dumps({"stages": summary, "total_s": int(total)}, indent=1) + "\n")
print("\n".join(lines))
PY
