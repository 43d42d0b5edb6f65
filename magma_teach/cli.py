"""``python -m magma_teach …``: build or download data, and run the paper's experiments.

Bad arguments exit with code 2 and one line naming the problem, never a traceback; a download that
fails (no network, wrong checksum, unsafe archive) exits with code 1 and one line naming the dataset.
"""

from __future__ import annotations

import argparse
import json
import sys


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (``error: …``) and exits with code 2."""

    def error(self, message):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="change one setting of the benchmark (VALUE is read as JSON if it parses, else as "
                             "text), e.g. --set per_language=40 or --set folder=/data/Yummly28K; repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m magma_teach", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = sub.add_parser("data", help="generate or download (or load from the cache) a benchmark and describe it")
    data.add_argument("name", help="offline: numbers | languages; full data: esc50 | cifar | fleurs | recipes")
    data.add_argument("--download", action="store_true",
                      help="fetch and verify a full-data benchmark (needs internet; large)")
    data.add_argument("--info", action="store_true", help="print classes, splits, sample rate, shapes, cache path")
    _add_settings(data)
    data.add_argument("--preset", default="quick", choices=["quick", "full"])
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--cache-dir", default=None, help="overrides $MAGMA_TEACH_CACHE and ~/.cache/magma_teach")

    from magma_teach.experiments import EXPERIMENTS, PRESETS

    run = sub.add_parser("run", help="run one experiment (a table or figure of the paper)")
    run.add_argument("experiment", choices=list(EXPERIMENTS), metavar="EXPERIMENT",
                     help="one of: " + ", ".join(EXPERIMENTS))
    run.add_argument("--preset", default="quick", choices=[p for p in PRESETS if p != "tiny"] + ["tiny"],
                     help="quick (CPU, minutes; default) or full (the paper's protocol, for a GPU)")
    run.add_argument("--data", default="offline", choices=["offline", "full"])
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", default="results", help="folder for <experiment>.json and .csv (default: results)")
    run.add_argument("--cache-dir", default=None, help="overrides $MAGMA_TEACH_CACHE and ~/.cache/magma_teach")
    _add_settings(run)

    sub.add_parser("list", help="list the experiments, one line each")
    return parser


def parse_settings(pairs: list[str]) -> dict:
    """``["per_language=40", "folder=/x"]`` → ``{"per_language": 40, "folder": "/x"}`` (JSON values, else text)."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def _data(args) -> int:
    from magma_teach.data.registry import BENCHMARKS, FULL_BENCHMARKS, info_lines, load

    names = [*BENCHMARKS, *FULL_BENCHMARKS, "cifar"]
    if args.name not in names:
        sys.stderr.write(f"python -m magma_teach data: error: unknown benchmark {args.name!r}; "
                         f"choose from {', '.join(names)}\n")
        return 2
    if args.name not in BENCHMARKS and not args.download:
        sys.stderr.write(f"python -m magma_teach data: error: {args.name} is full data (a large download): add "
                         f"--download to fetch and verify it, or use the offline 'numbers' or 'languages'\n")
        return 2
    if args.name == "cifar":  # CIFAR-10/100 alone: the image half of esc50
        from magma_teach.data.esc50 import download_cifar

        for name, path in download_cifar(cache_dir=args.cache_dir).items():
            print(f"{name}: {path}")
        return 0
    dataset = load(args.name, preset=args.preset, seed=args.seed, cache_dir=args.cache_dir,
                   **parse_settings(args.settings))
    for line in info_lines(dataset):
        print(line)
    return 0


def _run(args) -> int:
    from magma_teach.experiments import run
    from magma_teach.report import format_result

    result = run(args.experiment, preset=args.preset, data=args.data, device=args.device, seed=args.seed,
                 out=args.out, cache_dir=args.cache_dir, data_settings=parse_settings(args.settings))
    print(format_result(result))
    print(f"\nwrote {args.out}/{args.experiment}.json and .csv ({result.seconds:.0f} s on {result.device})")
    return 0


def _list(args) -> int:
    from magma_teach.experiments import EXPERIMENTS

    width = max(map(len, EXPERIMENTS))
    for name, (_, about) in EXPERIMENTS.items():
        print(f"{name:<{width}}  {about}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from magma_teach.data.download import DownloadError

    args = build_parser().parse_args(argv)
    try:
        return {"data": _data, "run": _run, "list": _list}[args.command](args)
    except ValueError as err:  # a bad value found past argparse: still one line, exit 2
        sys.stderr.write(f"python -m magma_teach {args.command}: error: {err}\n")
        return 2
    except DownloadError as err:  # no network, wrong checksum, unsafe archive: the message names the dataset
        sys.stderr.write(f"python -m magma_teach {args.command}: error: {err}\n")
        return 1
