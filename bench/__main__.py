"""`python -m bench all`: run every benchmark part; `python -m bench PART --help` for one part's options.

A part is a sibling module with `NAME`, `add_arguments(parser)` and
`run(args) -> exit code`; add it to PARTS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from types import ModuleType

PARTS = ("dispatch", "refill", "eventlog", "restart", "cli", "sessions", "large", "providers")


def _part(name: str) -> ModuleType:
    return importlib.import_module(f"bench.{name}")


def _first_line(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().splitlines()[0]


def run_all(smoke: bool, output: Path | None, only: list[str] | None = None) -> int:
    """Every part (or `only` these) with its defaults; the worst exit code."""
    worst = 0
    for name in only or PARTS:
        sub = argparse.ArgumentParser()
        _part(name).add_arguments(sub)
        argv = (["--smoke"] if smoke else []) + (["--output", str(output)] if output else [])
        print(f"\n==== {name} ====", flush=True)
        start = time.perf_counter()
        code = _part(name).run(sub.parse_args(argv))
        print(
            f"==== {name}: exit {code}, {time.perf_counter() - start:.0f}s ====",
            file=sys.stderr,
            flush=True,
        )
        worst = max(worst, code)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="orch's benchmarks.")
    parts = parser.add_subparsers(
        dest="part", metavar="PART", help="all, markdown, " + ", ".join(PARTS)
    )
    every = parts.add_parser("all", help="every part with its default sizes")
    every.add_argument("--smoke", action="store_true", help="every part at tiny sizes")
    every.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory for the JSON figures (default bench/results/)",
    )
    every.add_argument(
        "--only", default=None, help="a comma-separated subset of the parts, in this order"
    )
    markdown = parts.add_parser(
        "markdown", help="the latest figures as Markdown (for BENCHMARKS.md)"
    )
    markdown.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the parts wrote their JSON (default bench/results/)",
    )
    for name in PARTS:
        module = _part(name)
        sub = parts.add_parser(
            name,
            help=_first_line(module),
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    if args.part is None:
        parser.print_help()
        return 2
    if args.part == "markdown":
        from bench import markdown as md

        return md.main(args.results, PARTS)
    if args.part == "all":
        only = args.only.split(",") if args.only else None
        unknown = [name for name in only or [] if name not in PARTS]
        if unknown:
            parser.error(f"unknown part(s): {', '.join(unknown)}")
        return run_all(args.smoke, args.output, only)
    return _part(args.part).run(args)


if __name__ == "__main__":
    sys.exit(main())
