"""The command line before and around the work: bad configuration (one line, exit 2, before any work),
``--set`` applied or refused by every runner, result names that never collide, ``--force``, Ctrl-C,
``--help``/``--version``, and the progress and thread policies.

Most cases call :func:`magma_teach.cli.main` in this process with every runner replaced by a stub,
so a case that got past the checks is seen (the stub records it) and none trains anything.
"""

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from magma_teach import cli, utils
from magma_teach.experiments import EXPERIMENTS, ExperimentResult, run
from magma_teach.experiments.results import csv_frame, git_state, result_stem
from magma_teach.experiments.runner import Experiment

# One good and one bad value of one setting of each kind of data a runner loads (its --set keys).
SETTING_OF = {"numbers": ("per_concept", 5, "many"), "languages": ("per_language", 5, "many"),
              "recipes": ("per_class", 12, "many"), None: ("noise", 0.2, "loud")}
DATA_OF = {name: "full" if spec.data == ("full",) else "offline" for name, spec in EXPERIMENTS.items()}


def _rows():
    return pd.DataFrame({"approach": ["MAGMA", "MAGMA"], "shots": [1, 5], "mean": [41.26, 60.04],
                         "std": [1.234, 0.06], "target_samples": [10, 10], "target_labels": [0, 0]})


@pytest.fixture
def stubbed(monkeypatch, tmp_path):
    """Every runner replaced by a stub that records its Context; cache and cwd in ``tmp_path``."""
    calls = []

    def stub_of(name):
        def stub(ctx):
            calls.append(ctx)
            if name == "retrieval":
                return pd.DataFrame({"K": [5], "experiment": ["MAGMA"], "R@1": [4.0], "R@5": [9.0], "R@10": [20.0],
                                     "rank": [12.5], "cos": [0.1]}), {}
            return (_rows().assign(noise=0.0) if name == "noisy-labels" else _rows()), {}
        return stub

    for name, spec in list(EXPERIMENTS.items()):
        monkeypatch.setitem(EXPERIMENTS, name, Experiment(stub_of(name), spec.about, spec.benchmark, spec.data,
                                                          spec.needs_pairs, spec.check))
    monkeypatch.setenv("MAGMA_TEACH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MAGMA_TEACH_PROGRESS", "1")  # progress lines on: none may appear before a refusal
    monkeypatch.chdir(tmp_path)
    return calls


def _main(capsys, *argv):
    """``(exit code, stdout, stderr)`` of the command line run in this process."""
    try:
        code = cli.main(list(argv))
    except SystemExit as done:  # argparse's own errors
        code = done.code
    out, err = capsys.readouterr()
    return code, out, err


def _refused(capsys, argv, word):
    code, _, err = _main(capsys, *argv)
    assert code == 2, (argv, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert word in err, err
    return err


# --------------------------------------------------------------------------- bad configuration

BAD = [  # (arguments, environment, a word the one line must hold)
    (["run", "nope"], {}, "EXPERIMENT"),
    (["run", "image-audio", "--preset", "huge"], {}, "--preset"),
    (["run", "image-audio", "--data", "elsewhere"], {}, "--data"),
    (["run", "image-audio", "--device", "tpu"], {}, "--device"),
    (["run", "image-audio", "--seed", "x"], {}, "--seed"),
    (["run", "image-audio", "--seed", "-1"], {}, "--seed"),
    (["run", "image-audio", "--seed", "1.5"], {}, "--seed"),
    (["run", "image-audio", "--seed", str(2**64)], {}, "--seed"),
    (["run", "image-audio", "--threads", "0"], {}, "--threads"),
    (["run", "image-audio", "--threads", "many"], {}, "--threads"),
    (["run", "image-audio", "--out", "a_file"], {}, "--out"),
    (["run", "image-audio", "--out", "a_file/sub"], {}, "--out"),
    (["run", "image-audio", "--cache-dir", "a_file"], {}, "--cache-dir"),
    (["run", "image-audio", "--cache-dir", "a_file/sub"], {}, "--cache-dir"),
    (["run", "image-audio"], {"MAGMA_TEACH_CACHE": "a_file"}, "$MAGMA_TEACH_CACHE"),
    (["run", "image-audio"], {"MAGMA_TEACH_THREADS": "lots"}, "$MAGMA_TEACH_THREADS"),
    (["run", "image-audio"], {"MAGMA_TEACH_THREADS": "-2"}, "$MAGMA_TEACH_THREADS"),
    (["run", "image-audio"], {"MAGMA_TEACH_PROGRESS": "maybe"}, "$MAGMA_TEACH_PROGRESS"),
    (["run", "image-audio", "--set", "oops"], {}, "KEY=VALUE"),
    (["run", "image-audio", "--set", "=3"], {}, "KEY=VALUE"),
    (["run", "image-audio", "--set", "high=30", "--set", "high=40"], {}, "twice"),
    (["run", "image-audio", "--set", "seed=3"], {}, "unknown setting"),
    (["run", "image-audio", "--set", "high=NaN"], {}, "high"),
    (["run", "image-audio", "--set", "max_shift=abc"], {}, "max_shift"),
    (["run", "image-audio", "--set", "snr_db=[9, 1]"], {}, "snr_db"),
    (["run", "image-audio", "--set", "high=12"], {}, "concepts"),
    (["run", "text-speech", "--set", "languages=[\"xx\"]"], {}, "languages"),
    (["run", "text-image"], {}, "--data full"),
    (["run", "tradeoff", "--data", "full"], {}, "--data offline"),
    (["run", "retrieval", "--data", "full"], {}, "instance pairs"),
    (["run", "strong-weak", "--data", "full"], {}, "instance pairs"),
    (["run", "tradeoff", "--set", "n_pairs=abc"], {}, "n_pairs"),
    (["run", "tradeoff", "--set", "pairing_noise=0.5"], {}, "pairing_noise"),
    (["run", "tradeoff", "--set", "splits=[0.5, 0.5]"], {}, "splits"),
    (["run", "tradeoff", "--set", "noise=-1"], {}, "noise"),
    (["run", "tradeoff", "--set", "num_concepts=2.5"], {}, "num_concepts"),
    (["data", "nowhere"], {}, "benchmark"),
    (["data", "esc50"], {}, "--download"),
    (["data", "numbers", "--seed", "-3"], {}, "--seed"),
    (["data", "numbers", "--preset", "tiny"], {}, "--preset"),
    (["data", "numbers", "--set", "per_concept=abc"], {}, "per_concept"),
    (["data", "numbers", "--set", "colour=red"], {}, "unknown setting(s) ['colour']"),
    (["data", "numbers", "--cache-dir", "a_file"], {}, "--cache-dir"),
    (["data", "cifar", "--download", "--set", "x=1"], {}, "unknown setting"),
    (["frobnicate"], {}, "invalid choice"),
]


@pytest.mark.parametrize("argv, env, word", BAD, ids=[" ".join(a) + "".join(f" {k}" for k in e) for a, e, _ in BAD])
def test_bad_configuration_is_one_line_exit_2_before_any_work(stubbed, capsys, monkeypatch, argv, env, word):
    Path("a_file").write_text("not a folder")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _refused(capsys, argv, word)
    assert stubbed == []  # no runner started
    assert not Path("results").exists() and not Path("cache").exists()  # nothing created either


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder nobody can write in)")
@pytest.mark.parametrize("option", ["--out", "--cache-dir"])
def test_unwritable_folder_is_refused_before_work(stubbed, capsys, option):
    _refused(capsys, ["run", "image-audio", option, "/proc/magma_teach_test"], "not writable")
    assert stubbed == []


def test_cuda_without_cuda_is_refused(stubbed, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _refused(capsys, ["run", "image-audio", "--device", "cuda"], "CUDA")
    assert stubbed == []


def test_a_real_process_says_one_line_and_exits_2(tmp_path):
    (tmp_path / "f").write_text("")
    done = subprocess.run([sys.executable, "-m", "magma_teach", "run", "image-audio", "--preset", "tiny",
                           "--out", str(tmp_path / "f")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--out" in done.stderr


# --------------------------------------------------------------------------- --set in every runner

# Runners that score the data as someone else generated it, and so take no --set at all.
TAKES_NO_SETTINGS = {"tuning-check", "tuning-check-languages"}


def _set_cases():
    cases = []
    for name, spec in EXPERIMENTS.items():
        key, good, bad = SETTING_OF[spec.benchmark]
        if name in TAKES_NO_SETTINGS:
            cases += [(name, setting, "takes no --set") for setting in ("nosuchkey=3", f"{key}={json.dumps(good)}")]
            continue
        cases += [(name, "nosuchkey=3", "unknown setting(s) ['nosuchkey']"),
                  (name, f"{key}={json.dumps(bad)}", key),
                  (name, f"{key}={json.dumps(good)}", None)]
    return cases


@pytest.mark.parametrize("experiment, setting, refusal", _set_cases())
def test_every_runner_applies_or_refuses_each_setting(stubbed, capsys, experiment, setting, refusal):
    argv = ["run", experiment, "--preset", "tiny", "--data", DATA_OF[experiment], "--set", setting]
    if refusal is not None:
        _refused(capsys, argv, refusal)
        assert stubbed == []
        return
    code, _, err = _main(capsys, *argv)
    assert code == 0, err
    key, value = setting.split("=")
    (ctx,) = stubbed
    spec = EXPERIMENTS[experiment]
    if spec.benchmark is not None:  # the config the runner's ctx.benchmark(...) will load
        config = ctx.benchmark_config(spec.benchmark, spec.needs_pairs)[1]
    else:  # tradeoff: the concept world every part of the study is built from
        config = ctx.datasets["conceptworld"]["config"]
    assert config[key] == json.loads(value)


@pytest.mark.parametrize("benchmark", ["numbers", "languages", "esc50", "fleurs", "recipes"])
def test_every_setting_of_every_benchmark_takes_a_bad_value_as_a_value_error(benchmark):
    """Any value of any key: accepted, or refused with a ValueError (one line at the CLI), never a TypeError."""
    import importlib

    from magma_teach.experiments import Context

    keys = importlib.import_module(f"magma_teach.data.{benchmark}").DEFAULTS
    for key in keys:
        for value in ["text%", [[1]], -1, None, True, 2.5, {"a": 1}, float("nan"), []]:
            try:
                Context.generation_config(benchmark, "quick", 0, {key: value})
            except ValueError as err:
                assert "\n" not in str(err)
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['version'\]"):
        Context.generation_config(benchmark, "quick", 0, {"version": 99})


def test_tradeoff_builds_its_worlds_with_the_settings(monkeypatch):
    from magma_teach.experiments import PRESETS, Context
    from magma_teach.experiments import tradeoff as module

    ctx = Context(PRESETS["tiny"], torch.device("cpu"), 0, data_settings={"num_concepts": 50, "noise": 0.2})
    module.check_settings(ctx)
    assert ctx.datasets["conceptworld"]["config"]["num_concepts"] == 50
    assert module.world_settings(ctx) == {"num_concepts": 50, "noise": 0.2}


# --------------------------------------------------------------------------- result files

def test_result_names_never_collide():
    stems = {result_stem(e, p, d, s, x) for e in ("image-audio", "retrieval") for p in ("tiny", "quick")
             for d in ("offline", "full") for s in (0, 1) for x in ({}, {"per_concept": 5}, {"per_concept": 6})}
    assert len(stems) == 2 * 2 * 2 * 2 * 3
    assert result_stem("image-audio", "quick", "offline", 0) == "image-audio_quick_offline_seed0"
    assert result_stem("a", "b", "c", 0, {"x": 1, "y": 2}) == result_stem("a", "b", "c", 0, {"y": 2, "x": 1})


def test_two_seeds_give_two_files_and_a_rerun_needs_force(stubbed, capsys):
    for seed in ("0", "1"):
        code, out, _ = _main(capsys, "run", "image-audio", "--preset", "tiny", "--seed", seed)
        assert code == 0 and f"seed{seed}.json" in out
    files = sorted(p.name for p in Path("results").iterdir())
    assert files == ["image-audio_tiny_offline_seed0.csv", "image-audio_tiny_offline_seed0.json",
                     "image-audio_tiny_offline_seed1.csv", "image-audio_tiny_offline_seed1.json"]
    assert json.loads(Path("results/image-audio_tiny_offline_seed1.json").read_text())["seed"] == 1
    before = Path("results/image-audio_tiny_offline_seed0.json").read_bytes()
    _refused(capsys, ["run", "image-audio", "--preset", "tiny"], "--force")
    assert len(stubbed) == 2 and Path("results/image-audio_tiny_offline_seed0.json").read_bytes() == before
    code, _, err = _main(capsys, "run", "image-audio", "--preset", "tiny", "--force")
    assert code == 0 and len(stubbed) == 3, err
    with pytest.raises(ValueError, match="force=True"):  # the Python API refuses too
        run("image-audio", preset="tiny", out="results")
    assert not list(Path("results").glob(".*.tmp"))


def test_progress_lines_go_to_stderr_with_elapsed_time(stubbed, capsys):
    code, _, err = _main(capsys, "run", "image-audio", "--preset", "tiny")
    assert code == 0
    assert re.fullmatch(r"\[image-audio\]… done in \d+\.\d s\n", err), err


def test_csv_has_units_and_rounding_and_json_reads_back(tmp_path):
    rows = _rows().assign(noise=[0.123, 0.5])
    result = ExperimentResult("image-audio", "tiny", "offline", "cpu", 1.0, rows,
                              {"predictions": pd.DataFrame({"text": ["a"], "MAGMA": ["en"]})}, seed=3, seeds=[3])
    path = result.write(tmp_path)
    assert path.name == "image-audio_tiny_offline_seed3.json"
    csv = pd.read_csv(tmp_path / "image-audio_tiny_offline_seed3.csv")
    assert list(csv.columns) == ["approach", "shots_per_class", "accuracy_mean_pct", "accuracy_std_pct",
                                 "target_samples", "target_labels", "label_noise_fraction"]
    assert list(csv["accuracy_mean_pct"]) == [41.3, 60.0] and list(csv["accuracy_std_pct"]) == [1.2, 0.1]
    assert list(csv["label_noise_fraction"]) == [0.12, 0.5]
    again = ExperimentResult.read(path)
    pd.testing.assert_frame_equal(again.rows, rows)  # the JSON keeps full precision
    assert again.seed == 3 and list(again.extras) == ["predictions"]
    assert list(csv_frame(rows).columns) == list(csv.columns)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_result_files_follow_the_umask(tmp_path, umask, mode):
    """The JSON and CSV go through tempfile.mkstemp (owner-only) but end with the mode open() would give."""
    rows = pd.DataFrame({"approach": ["MAGMA"], "shots": [1], "mean": [90.0], "std": [1.0]})
    old = os.umask(umask)
    try:
        json_path = ExperimentResult("image-audio", "tiny", "offline", "cpu", 1.0, rows, {}, seed=0,
                                     seeds=[0]).write(tmp_path)
    finally:
        os.umask(old)
    for path in (json_path, json_path.with_suffix(".csv")):
        assert path.stat().st_mode & 0o777 == mode, path


def test_a_missing_number_reads_back_as_nan(tmp_path):
    """NaN is written as JSON null; reading it back gives a float NaN again, never None."""
    rows = pd.DataFrame({"approach": ["MAGMA", "Oracle"], "mean": [90.0, 80.0], "recorded": [float("nan")] * 2,
                         "partly": [1.5, float("nan")], "verdict": ["not tuned", None]})
    result = ExperimentResult("tuning-check", "tiny", "offline", "cpu", 1.0, rows, {}, seed=0, seeds=[0])
    again = ExperimentResult.read(result.write(tmp_path))
    assert again.rows["recorded"].dtype == float and again.rows["recorded"].isna().all()
    assert again.rows["partly"].tolist()[0] == 1.5 and pd.isna(again.rows["partly"].tolist()[1])
    assert again.rows["verdict"][0] == "not tuned" and pd.isna(again.rows["verdict"][1])  # text stays text


def test_every_number_reads_back_bit_for_bit(tmp_path):
    """Results files keep full precision: a rounding read from the file is the rounding of the run."""
    import numpy as np

    rows = pd.DataFrame({"approach": ["MAGMA", "Oracle", "Align"], "shots": [1, 5, 10],
                         "mean": [92.94444444444444 - 56.69444444444443, 0.1 + 0.2, 1 / 3],
                         "std": [np.float32(0.1).item(), 1e-17, float("nan")],
                         "top": [[1, 2], np.array([3, 4]), []], "count": np.array([1, 2, 3], dtype=np.int64)})
    extras = {"runs": pd.DataFrame({"value": [2 / 3, 123456.78901234567]})}
    result = ExperimentResult("image-audio", "tiny", "offline", "cpu", 1.0, rows, extras, seed=0, seeds=[0])
    again = ExperimentResult.read(result.write(tmp_path))
    assert again.rows["mean"].tolist() == rows["mean"].tolist()  # exactly, not to 10 decimals
    assert round(again.rows["mean"][0], 1) == round(rows["mean"][0], 1) == 36.3
    assert again.rows["std"][:2].tolist() == rows["std"][:2].tolist() and pd.isna(again.rows["std"][2])
    assert again.rows["top"].tolist() == [[1, 2], [3, 4], []] and again.rows["count"].tolist() == [1, 2, 3]
    assert again.extras["runs"]["value"].tolist() == extras["runs"]["value"].tolist()


# --------------------------------------------------------------------------- interrupts

def _read_until(stream, needle: str, seconds: float) -> str:
    text, deadline = "", time.monotonic() + seconds
    while needle not in text and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.5)
        if ready:
            chunk = os.read(stream.fileno(), 4096).decode()
            if not chunk:
                break
            text += chunk
    return text


def _interrupted(child) -> str:
    """What an interrupted child wrote on stderr, once it is checked to have ended by SIGINT after one line
    (a shell reports that as 130) and with no traceback."""
    _, err = child.communicate(timeout=60)
    err = err.decode()
    assert child.returncode == -signal.SIGINT, (child.returncode, err)
    assert "Traceback" not in err, err
    assert re.fullmatch(r"python -m magma_teach( run)?: interrupted \(Ctrl-C\).*", err.strip().splitlines()[-1]), err
    return err


def _start(command: list[str], cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "MAGMA_TEACH_PROGRESS": "1"}, cwd=cwd,
                            # Ctrl-C as a terminal delivers it: when pytest itself runs in the
                            # background (`cmd &`, nohup), SIGINT is ignored and a child would
                            # inherit that, and Python keeps an ignored SIGINT ignored.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _image_audio(tmp_path) -> list[str]:
    return ["magma_teach", "run", "image-audio", "--preset", "tiny",
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_ends_by_sigint_in_one_line_and_leaves_no_partial_file(tmp_path):
    child = _start(_image_audio(tmp_path))
    try:
        seen = _read_until(child.stderr, "load or generate… ", 120)  # the data is being generated now
        assert "load or generate" in seen, seen
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        _interrupted(child)
    finally:
        child.kill()
    assert not (tmp_path / "out").exists()
    for path in (tmp_path / "cache").rglob("*"):  # only whole cache files (or none), never a temporary one
        assert not path.name.endswith(".tmp"), path
        if path.suffix == ".pt":
            torch.load(path, weights_only=True)


def _runpy_after_a_line(tmp_path) -> Path:
    """A folder with ``runpy_after_a_line.py``: says "python is up" on stderr, then runs
    ``python -m magma_teach`` with the rest of its arguments, as ``-m`` would."""
    folder = tmp_path / "runner"
    folder.mkdir()
    (folder / "runpy_after_a_line.py").write_text(
        "import runpy, sys\n"
        "sys.stderr.write('python is up\\n')\n"
        "sys.stderr.flush()\n"
        "runpy.run_module('magma_teach', run_name='__main__', alter_sys=True)\n")
    return folder


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
@pytest.mark.parametrize("delay", [0.05, 0.3, 1.0])
def test_ctrl_c_while_starting_up_is_one_line_too(tmp_path, delay):
    """From the package's first moment: it imports no torch, and the imports inside a run are covered.

    The delay counts from the moment the interpreter is up (the child says so on stderr before it runs
    ``python -m magma_teach`` as runpy does). Before that, a Ctrl-C lands in Python's own start-up, which
    no package can handle (on a busy machine 50 ms did not always get past it)."""
    child = _start(["runpy_after_a_line", *_image_audio(tmp_path)[1:]], cwd=_runpy_after_a_line(tmp_path))
    try:
        assert "python is up" in _read_until(child.stderr, "python is up", 60)
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        _interrupted(child)
    finally:
        child.kill()


def test_importing_the_package_imports_no_torch():
    """So that ``python -m magma_teach`` (which imports the package first) is in its own code, and
    handles Ctrl-C, from its first moment."""
    code = "import sys, magma_teach; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
@pytest.mark.parametrize("where", ["raise KeyboardInterrupt", "exec('raise KeyboardInterrupt')"])
def test_the_way_an_interrupt_ends_does_not_depend_on_where_it_landed(tmp_path, where):
    """CPython's ``-m`` path turns ``exit(130)`` into a SIGINT death only when the KeyboardInterrupt
    passed through string-``exec`` code (a dataclass being built, say): :func:`cli.run` always ends by
    SIGINT, so the two cases end alike."""
    (tmp_path / "interrupted_here.py").write_text(
        "from magma_teach import cli\n"
        f"def build_parser():\n    {where}\n"
        "cli.build_parser = build_parser\n"
        "cli.run(['list'])\n")
    _interrupted(_start(["interrupted_here"], cwd=tmp_path))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_ctrl_c_while_the_command_line_is_imported_ends_by_sigint_too(tmp_path):
    """The window a real Ctrl-C hits only now and then (``python -m magma_teach`` still importing
    :mod:`magma_teach.cli`), made certain: an import hook raises KeyboardInterrupt there. The process
    must end as a run does (one line, then SIGINT), not with ``exit(130)``."""
    (tmp_path / "interrupted_import.py").write_text(
        "import runpy, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'magma_teach.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "runpy.run_module('magma_teach', run_name='__main__', alter_sys=True)\n")
    err = _interrupted(_start(["interrupted_import"], cwd=tmp_path))
    assert err.strip() == "python -m magma_teach: interrupted (Ctrl-C)"


_CTRL_C = "os.kill(os.getpid(), signal.SIGINT); time.sleep(5)"  # Python raises KeyboardInterrupt in the sleep
_LIBRARIES = {  # how a library meets the Ctrl-C
    "made into another error": f"try: {_CTRL_C}\n"
                               "except KeyboardInterrupt: raise ImportError('could not import datetime') from None",
    "dropped": f"try: {_CTRL_C}\nexcept KeyboardInterrupt: pass",
    "ignored in a destructor": f"class Closing:\n    def __del__(self): {_CTRL_C}\nClosing()",
}


def _library_meets_a_ctrl_c(tmp_path, library: str) -> list[str]:
    """A module that runs ``python -m magma_teach`` with an import hook: when pandas is imported (while the
    command line is built), the hook sends this process SIGINT and meets the KeyboardInterrupt as
    ``library`` says. Returns the ``-m`` arguments for :func:`_start`."""
    body = textwrap.indent(library, " " * 12)
    (tmp_path / "library_meets_a_ctrl_c.py").write_text(
        "import os, runpy, signal, sys, time\n"
        "class Library:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'pandas':\n"
        "            sys.meta_path.remove(self)\n"
        f"{body}\n"
        "sys.meta_path.insert(0, Library())\n"
        "runpy.run_module('magma_teach', run_name='__main__', alter_sys=True)\n")
    return ["library_meets_a_ctrl_c", *_image_audio(tmp_path)[1:]]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
@pytest.mark.parametrize("library", _LIBRARIES.values(), ids=_LIBRARIES.keys())
def test_a_ctrl_c_that_a_library_makes_into_an_error_or_drops_still_ends_the_run(tmp_path, library):
    """numpy's C import once turned a Ctrl-C into "ImportError: PyCapsule_Import could not import module
    "datetime"" (a traceback, exit 1); C code that clears errors dropped one (the run went on to the end,
    exit 0); a destructor prints "Exception ignored in" and goes on. Each way, the run must end as
    interrupted (one line, no traceback, SIGINT) and write no result."""
    _interrupted(_start(_library_meets_a_ctrl_c(tmp_path, library), cwd=tmp_path))
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
@pytest.mark.parametrize("handler", ["python's", "a recording one", "ignored"])
def test_a_ctrl_c_held_back_during_a_rename_is_delivered_as_the_handler_before_would_have(handler):
    """While result files are renamed into place a SIGINT waits; after, it goes to the handler that was
    there: Python's raises KeyboardInterrupt (not inside the block), another is called, an ignored stays so."""
    from magma_teach.experiments.results import _interrupts_held

    calls = []
    before = {"python's": signal.default_int_handler, "a recording one": lambda *args: calls.append(args[0]),
              "ignored": signal.SIG_IGN}[handler]
    previous = signal.signal(signal.SIGINT, before)
    inside = []
    try:
        with pytest.raises(KeyboardInterrupt) if handler == "python's" else contextlib.nullcontext():
            with _interrupts_held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
                inside.append("reached the end of the block")
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGINT, previous)
    assert inside == ["reached the end of the block"]
    assert calls == ([signal.SIGINT] if handler == "a recording one" else [])


def test_an_error_is_no_interrupt_without_a_ctrl_c(capsys, monkeypatch):
    """The same ImportError, with no Ctrl-C before it, is a real error: raised, not reported as one."""
    def broken(args):
        raise ImportError("could not import module datetime")

    monkeypatch.setattr(cli, "_list", broken)
    with pytest.raises(ImportError, match="datetime"):
        cli.main(["list"])
    assert "interrupted" not in capsys.readouterr().err


# --------------------------------------------------------------------------- help and version

def test_help_has_no_restructuredtext_markup(capsys):
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for text in [parser.format_help(), *(p.format_help() for p in subparsers.values())]:
        assert not re.search(r"``|:(func|mod|class|data|meth|attr):`", text), text


def test_version_and_help_in_a_real_process():
    done = subprocess.run([sys.executable, "-m", "magma_teach", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and re.fullmatch(r"magma_teach \d+\.\d+\.\d+\S*\n", done.stdout)
    done = subprocess.run([sys.executable, "-m", "magma_teach", "run", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "``" not in done.stdout
    for option in ("--set", "--cache-dir", "--preset", "tiny", "--force", "--out", "--threads", "--seed"):
        assert option in done.stdout


# --------------------------------------------------------------------------- progress and threads

def test_phase_lines(capsys, monkeypatch):
    monkeypatch.delenv("MAGMA_TEACH_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with utils.phase("[x]"):
        with utils.phase("MAGMA: meta-training"):
            pass
    err = capsys.readouterr().err
    assert re.fullmatch(r"\[x\]… \n\[x\] MAGMA: meta-training… done in \d+\.\d s\n\[x\]… done in \d+\.\d s\n", err)
    with pytest.raises(KeyError), utils.phase("step"):
        raise KeyError("boom")
    assert capsys.readouterr().err == "step… \n"  # the open line is ended, no "done"


@pytest.mark.parametrize("env, progress, lines", [({}, None, True), ({"CI": "true"}, None, False),
                                                   ({"MAGMA_TEACH_PROGRESS": "0"}, None, False),
                                                   ({"MAGMA_TEACH_PROGRESS": "1", "CI": "1"}, None, True),
                                                   ({"MAGMA_TEACH_PROGRESS": "0"}, True, True), ({}, False, False)])
def test_progress_policy(capsys, monkeypatch, env, progress, lines):
    monkeypatch.delenv("MAGMA_TEACH_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert utils.show_phases(progress) is lines
    with utils.phase("work", progress):
        pass
    assert bool(capsys.readouterr().err) is lines
    if progress is None:  # bars only in a terminal or notebook: never under pytest's captured stderr
        assert utils.show_progress(progress) is False


def test_thread_policy(monkeypatch):
    monkeypatch.delenv("MAGMA_TEACH_THREADS", raising=False)
    assert utils.thread_policy("one") == 1 and utils.thread_policy(3) == 3 and utils.thread_policy("2") == 2
    assert 1 <= utils.thread_policy("free") <= os.cpu_count()
    assert utils.thread_policy() == utils.thread_policy(utils.DEFAULT_THREAD_POLICY)
    monkeypatch.setenv("MAGMA_TEACH_THREADS", "one")
    assert utils.thread_policy() == 1
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        utils.thread_policy(0)
    before = torch.get_num_threads()
    with utils.use_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("check, args, word", [(utils.check_positive, ("x", "abc"), "x must be"),
                                               (utils.check_positive, ("x", [1]), "x must be"),
                                               (utils.check_positive, ("x", None), "x must be"),
                                               (utils.check_range, ("x", "abc", 0, 1), r"x must be a number in \[0, 1\]"),
                                               (utils.check_range, ("x", True, 0, 1), "x must be a number"),
                                               (utils.check_range, ("x", float("nan"), 0, 1), "x must be in")])
def test_checks_refuse_non_numbers_with_a_value_error(check, args, word):
    with pytest.raises(ValueError, match=word):
        check(*args)


def test_git_state_outside_a_checkout_is_none(tmp_path):
    assert git_state(tmp_path) is None
    state = git_state()
    assert state is None or (re.fullmatch(r"[0-9a-f]{40}", state["commit"]) and isinstance(state["dirty"], bool))


# --------------------------------------------------------------------------- list, downloads, --set parsing

def test_list_prints_one_line_per_experiment(capsys):
    code, out, _ = _main(capsys, "list")
    assert code == 0 and [line.split()[0] for line in out.strip().splitlines()] == list(EXPERIMENTS)


@pytest.mark.parametrize("argv", [["data", "esc50", "--download"], ["data", "cifar", "--download"],
                                  ["data", "fleurs", "--download"], ["data", "recipes", "--download"],
                                  ["run", "image-audio", "--data", "full", "--preset", "tiny", "--out", "{tmp}"]])
def test_without_network_a_download_exits_1_with_one_line(no_network, capsys, tmp_path, argv):
    code, _, err = _main(capsys, *[a.format(tmp=tmp_path / "out") for a in argv])
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "offline benchmark" in err or "checksum" in err
    files = [p for p in no_network.rglob("*") if p.is_file() and ".locks" not in p.parts] if no_network.exists() else []
    assert files == []  # nothing half-written
    assert not (tmp_path / "out").exists()


def test_settings_are_json_or_text():
    assert cli.parse_settings(["per_language=40", "folder=/data/x", "languages=[\"en_us\"]"]) == {
        "per_language": 40, "folder": "/data/x", "languages": ["en_us"]}
    with pytest.raises(ValueError, match="--set takes KEY=VALUE"):
        cli.parse_settings(["oops"])
