"""`python -m bench`: run every benchmark part; `python -m bench PART --help` for one part's options.

A part is a sibling module with `NAME`, `add_arguments(parser)` and
`run(args) -> exit code`; add it to PARTS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

PARTS = ("dispatch",)


def _part(name: str) -> ModuleType:
    return importlib.import_module(f"bench.{name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="orch's benchmarks.")
    parser.add_argument("--smoke", action="store_true", help="every part at tiny sizes (when no PART is given)")
    parts = parser.add_subparsers(dest="part", metavar="PART", help=", ".join(PARTS))
    for name in PARTS:
        module = _part(name)
        sub = parts.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0],
                               description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    if args.part:
        return _part(args.part).run(args)
    worst = 0
    for name in PARTS:  # every part with its defaults
        sub = argparse.ArgumentParser()
        _part(name).add_arguments(sub)
        worst = max(worst, _part(name).run(sub.parse_args(["--smoke"] if args.smoke else [])))
    return worst


if __name__ == "__main__":
    sys.exit(main())
