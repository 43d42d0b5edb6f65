"""The command line, ``python -m magma_teach``: build or download data, and run the paper's experiments.

Exit codes: 0 done; 1 a download failed (no network, wrong checksum, unsafe archive) or the disk
refused a write; 2 a bad argument or setting, found before any work, in one line naming it (never a
traceback); 130 interrupted by Ctrl-C (results and cache files are written whole or not at all).

:func:`main` returns the code; :func:`run`, the process entry of ``python -m magma_teach`` and the
``magma-teach`` script, exits with it, except after Ctrl-C: then, once its one-line message is written,
the process ends by SIGINT, as an interrupted Unix program should. A shell reports that as 130 too, and
a calling shell loop stops instead of going on to its next command.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
from typing import NoReturn

from magma_teach import interrupt
from magma_teach.interrupt import EXIT_CODE

PROG = "python -m magma_teach"
DESCRIPTION = "Build or download the benchmarks, and run the experiments of the MAGMA paper."
EPILOG = ("exit codes: 0 done; 1 a download or a write failed; 2 a bad argument (found before any work); "
          "130 interrupted.\nenvironment: MAGMA_TEACH_CACHE (cache folder), MAGMA_TEACH_THREADS (torch threads), "
          "MAGMA_TEACH_PROGRESS (0 = no progress lines), MAGMA_TEACH_MIRROR (download mirror).")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (``error: …``) and exits with code 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _seed(text: str) -> int:
    from magma_teach.experiments.runner import SEED_MAX

    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {SEED_MAX}], got {text!r}")
    return value


def _threads(text: str) -> int | str:
    from magma_teach.utils import thread_policy

    try:
        thread_policy(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("threads ")) from None
    return int(text) if text.isdigit() else text


def _add_common(parser: argparse.ArgumentParser, presets: list[str]) -> None:
    parser.add_argument("--preset", default="quick", choices=presets,
                        help="sizes of the run: " + ", ".join(presets) + " (default: quick)")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the data and the first training seed (default: 0)")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="cache folder; overrides $MAGMA_TEACH_CACHE and ~/.cache/magma_teach")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="change one setting of the benchmark (VALUE is read as JSON if it parses, else as "
                             "text), e.g. --set per_language=40 or --set folder=/data/Yummly28K; repeatable; "
                             "an unknown key or bad value stops the run before any work")


def build_parser() -> argparse.ArgumentParser:
    from magma_teach import __version__
    from magma_teach.experiments import EXPERIMENTS, PRESETS
    from magma_teach.utils import THREAD_POLICIES

    parser = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"magma_teach {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = sub.add_parser("data", help="generate or download (or load from the cache) a benchmark and describe it")
    data.add_argument("name", help="offline: numbers | languages; full data: esc50 | cifar | fleurs | recipes")
    data.add_argument("--download", action="store_true",
                      help="fetch and verify a full-data benchmark (needs internet; large)")
    data.add_argument("--info", action="store_true", help="print classes, splits, sample rate, shapes, cache path")
    _add_common(data, ["quick", "full"])

    run = sub.add_parser("run", help="run one experiment (a table or figure of the paper)",
                         description="Run one experiment, print its table beside the paper's and write "
                                     "OUT/<experiment>_<preset>_<data>_seed<N>.json and .csv.")
    run.add_argument("experiment", choices=list(EXPERIMENTS), metavar="EXPERIMENT",
                     help="one of: " + ", ".join(EXPERIMENTS))
    _add_common(run, list(PRESETS))
    run.add_argument("--data", default="offline", choices=["offline", "full"],
                     help="offline: generated benchmarks (default); full: the paper's datasets (downloads)")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--out", default="results", metavar="DIR", help="folder for the result files (default: results)")
    run.add_argument("--force", action="store_true", help="replace a result of the same name")
    run.add_argument("--threads", type=_threads, default=None, metavar="N|POLICY",
                     help="torch threads: a number or one of " + ", ".join(THREAD_POLICIES)
                          + " (default: $MAGMA_TEACH_THREADS, else the package's default)")

    tune = sub.add_parser("tune", help="equal-budget tuning: one Optuna study per approach, validation concepts only",
                          description="Tune the learning rates of every approach on a benchmark with the same number "
                                      "of trials each, scoring validation concepts only; --write stores the chosen "
                                      "settings in the package (magma_teach/tuned.json).")
    tune.add_argument("benchmark", choices=["numbers", "languages"])
    tune.add_argument("--approach", action="append", default=None, metavar="NAME",
                      help="tune only this approach (repeatable; default: every approach of the benchmark's table)")
    tune.add_argument("--trials", type=int, default=12, help="finished trials per study (default: 12)")
    tune.add_argument("--seeds", type=int, default=3, metavar="N",
                      help="training seeds per trial, 1000, 1001, …; the objective is their mean (default: 3)")
    tune.add_argument("--preset", default="quick", choices=list(PRESETS), help="training budget of each trial")
    tune.add_argument("--seed", type=_seed, default=0, help="seed of the data and of the TPE sampler (default: 0)")
    tune.add_argument("--storage", default=None, metavar="URL",
                      help="Optuna storage (default: sqlite:///<cache>/tuning.db); an RDB URL shares studies "
                           "between machines")
    tune.add_argument("--cache-dir", default=None, metavar="DIR", help="cache folder (data and the default storage)")
    tune.add_argument("--write", action="store_true", help="store the chosen settings in magma_teach/tuned.json")

    sub.add_parser("list", help="list the experiments, one line each")
    return parser


def parse_settings(pairs: list[str]) -> dict:
    """``["per_language=40", "folder=/x"]`` → ``{"per_language": 40, "folder": "/x"}`` (JSON values, else text).

    ``ValueError`` for a pair without ``=`` or a key, and for a key given twice (the second would
    silently win).
    """
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        if key in settings:
            raise ValueError(f"--set gives {key!r} twice; give each key once")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def _check_cache(cache_dir) -> None:
    """The cache folder the command will write to, checked before any work (``ValueError``)."""
    from magma_teach.data.cache import ENV_VAR, cache_root
    from magma_teach.utils import check_writable_dir

    name = "--cache-dir" if cache_dir is not None else f"${ENV_VAR}" if os.environ.get(ENV_VAR) else \
        "the default cache folder (set --cache-dir or $MAGMA_TEACH_CACHE)"
    check_writable_dir(name, cache_root(cache_dir))


def _data(args) -> int:
    from magma_teach.data.registry import BENCHMARKS, FULL_BENCHMARKS, info_lines, load

    names = [*BENCHMARKS, *FULL_BENCHMARKS, "cifar"]
    if args.name not in names:
        raise ValueError(f"unknown benchmark {args.name!r}; choose from {', '.join(names)}")
    if args.name not in BENCHMARKS and not args.download:
        raise ValueError(f"{args.name} is full data (a large download): add --download to fetch and verify it, "
                         f"or use the offline 'numbers' or 'languages'")
    settings = parse_settings(args.settings)
    _check_cache(args.cache_dir)
    if args.name == "cifar":  # CIFAR-10/100 alone: the image half of esc50
        from magma_teach.data.esc50 import download_cifar

        if settings:
            raise ValueError(f"cifar has no settings; unknown setting(s) {sorted(settings)}")
        for name, path in download_cifar(cache_dir=args.cache_dir).items():
            print(f"{name}: {path}")
        return 0
    from magma_teach.experiments.context import Context

    Context.generation_config(args.name, args.preset, args.seed, settings)  # every setting checked before any work
    dataset = load(args.name, preset=args.preset, seed=args.seed, cache_dir=args.cache_dir, **settings)
    for line in info_lines(dataset):
        print(line)
    return 0


def _run(args) -> int:
    from magma_teach.experiments import run
    from magma_teach.experiments.results import check_free, result_stem
    from magma_teach.experiments.runner import experiment_spec
    from magma_teach.report import format_result
    from magma_teach.utils import check_writable_dir

    settings = parse_settings(args.settings)
    # The output locations first, in the options' own names (run() checks them again for API callers).
    check_writable_dir("--out", args.out)
    check_free(args.out, result_stem(args.experiment, args.preset, args.data, args.seed, settings), args.force,
               flag="--force")
    if experiment_spec(args.experiment).benchmark is not None:
        _check_cache(args.cache_dir)
    result = run(args.experiment, preset=args.preset, data=args.data, device=args.device, seed=args.seed,
                 out=args.out, cache_dir=args.cache_dir, data_settings=settings, force=args.force,
                 threads=args.threads)
    print(format_result(result))
    json_path, _ = result.paths(args.out)
    print(f"\nwrote {json_path} and .csv ({result.seconds:.0f} s on {result.device}, "
          f"{result.provenance['torch_threads']} torch threads)")
    return 0


def _tune(args) -> int:
    import torch

    from magma_teach import tuning
    from magma_teach.data.registry import load
    from magma_teach.experiments import PRESETS, magma_config
    from magma_teach.experiments.context import APPROACHES_AFTER_FIRST, FIRST_APPROACH
    from magma_teach.utils import phase

    for name, value in (("--trials", args.trials), ("--seeds", args.seeds)):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    seeds = tuple(range(tuning.TUNING_SEEDS[0], tuning.TUNING_SEEDS[0] + args.seeds))
    approaches = args.approach or [FIRST_APPROACH[args.benchmark], *APPROACHES_AFTER_FIRST]
    for a in approaches:
        if a not in tuning.SPACES:
            raise ValueError(f"--approach must be one of {', '.join(tuning.SPACES)}, got {a!r}")
    _check_cache(args.cache_dir)
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ValueError("tuning needs Optuna: pip install 'magma_teach[tune]'") from None
    preset = PRESETS[args.preset]
    storage = args.storage or tuning.default_storage(args.cache_dir)
    torch.set_num_threads(1)  # a trial trains like a run's training job: one thread (start one tune per core)
    data = load(args.benchmark, preset="full" if preset.data == "full" else "quick", seed=args.seed,
                cache_dir=args.cache_dir, **preset.data_overrides.get(args.benchmark, {}))
    results = {}
    for a in approaches:
        with phase(f"[tune {args.benchmark}] {a}: {args.trials} trials × {len(seeds)} training seeds"):
            results[a] = tuning.run_study(args.benchmark, a, data, magma_config(preset, data, approach=a), args.trials,
                                          storage, seed=args.seed, seeds=seeds)
        print(f"{a}: validation {results[a]['value']:.1f}% with {results[a]['params']}")
    if args.write:
        command = (f"python -m magma_teach tune {args.benchmark} --trials {args.trials} --seeds {args.seeds} "
                   f"--preset {args.preset} --write")
        path = tuning.write_tuned(args.benchmark, results, {
            "command": command, "preset": args.preset, "sampler": f"TPE (seed {args.seed})", "data seed": args.seed,
            "objective": "mean 5-way accuracy (%) at k = 1 and 5 on validation concepts, mean over the training seeds",
            "training seeds": list(seeds)})
        print(f"wrote {path.name}")
    return 0


def _list(args) -> int:
    from magma_teach.experiments import EXPERIMENTS

    width = max(map(len, EXPERIMENTS))
    for name, spec in EXPERIMENTS.items():
        about = spec.about if hasattr(spec, "about") else spec[1]
        print(f"{name:<{width}}  {about}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    command = ""
    try:
        args = build_parser().parse_args(argv)
        command = f" {args.command}"
        code = {"data": _data, "run": _run, "list": _list, "tune": _tune}[args.command](args)
        interrupt.check()  # a Ctrl-C that a library dropped after the last step still ends as one
        return code
    except BaseException as err:
        code = _exit_code(err, command)
        if code is None:
            raise
        return code


def _exit_code(err: BaseException, command: str) -> int | None:
    """The exit code for ``err`` once its one line is written, or None for an error not reported so."""
    if interrupt.stands_for_one(err):  # also an error a library made of a Ctrl-C (numpy's import: ImportError)
        sys.stderr.write(f"{PROG}{command}: interrupted (Ctrl-C); result and cache files are written whole or "
                         f"not at all, so nothing half-written was left\n")
        return EXIT_CODE
    if isinstance(err, ValueError):  # a bad value found past argparse: still one line, exit 2
        sys.stderr.write(f"{PROG}{command}: error: {_one_line(err)}\n")
        return 2
    if isinstance(err, (RuntimeError, OSError)):
        from magma_teach.data.download import DownloadError

        # no network, wrong checksum, unsafe archive (the message names the dataset), or the disk
        # refused a write (full, folder removed mid-run): one line, exit 1
        if isinstance(err, (DownloadError, OSError)):
            sys.stderr.write(f"{PROG}{command}: error: {_one_line(err)}\n")
            return 1
    return None


def run(argv: list[str] | None = None) -> NoReturn:
    """Run :func:`main` and end the process with its code; after Ctrl-C (130), end it by SIGINT (POSIX).

    The SIGINT comes last, after every other exit handler (it is registered before :func:`main` imports
    anything that registers one). Ending by the signal, not ``exit(130)``, also makes the status one and
    the same wherever the Ctrl-C landed: under ``python -m``, CPython 3.11-3.12 turn some ``exit(130)``
    into a SIGINT death, because a KeyboardInterrupt that passed through code run by string ``exec`` (a
    dataclass being built during an import) sets a flag that ``Py_RunMain`` checks at exit, while the
    next string ``exec`` (an exit handler's, say) clears it again.
    """
    interrupt.watch()
    outcome = {}
    atexit.register(_end_by_sigint_if_interrupted, outcome)
    outcome["code"] = main(argv)
    sys.exit(outcome["code"])


def _end_by_sigint_if_interrupted(outcome: dict) -> None:
    if outcome.get("code") == EXIT_CODE:
        interrupt.end_by_sigint()


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())
