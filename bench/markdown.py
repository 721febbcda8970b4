"""`python -m bench markdown [--results DIR]`: the latest figures of every part as Markdown (for BENCHMARKS.md).

It reads DIR/PART.json (default bench/results/) of each part that has run
and prints, per part, when it ran, its parameters and its table, after the
machine it ran on.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, cpu_model


def _part_section(doc: dict[str, Any]) -> str:
    params = " ".join(f"{k}={v}" for k, v in doc.get("params", {}).items() if k != "smoke")
    load = ", ".join(f"{x:.1f}" for x in doc.get("machine", {}).get("load_avg", []))
    return (
        f"## {doc['bench']}\n\nMeasured {doc['measured_at']} (load average as it ended: {load}); "
        f"parameters: `{params}`.\n\n```\n{doc.get('table', '').rstrip()}\n```\n"
    )


def render(results: Path, parts: Sequence[str]) -> str:
    """Markdown of every part's latest JSON in `results`, in the order of `parts`."""
    docs = []
    for name in parts:
        path = results / f"{name}.json"
        if path.exists():
            docs.append(json.loads(path.read_text()))
    machine = docs[0]["machine"] if docs else {}
    head = (
        "# Benchmarks\n\nThe latest figures of `python -m bench all` (see bench/README.md for what each part "
        "measures and how).\n\n"
        f"- Machine: {machine.get('cpus', '?')} CPUs (`nproc`), {machine.get('cpu_model') or cpu_model()}, "
        f"{machine.get('system', platform.platform())}\n"
        f"- Python {machine.get('python', platform.python_version())}\n"
        "- Command: `python -m bench all` (each part alone: `python -m bench PART`)\n"
        f"- Date: {min((d['measured_at'] for d in docs), default='-')} to "
        f"{max((d['measured_at'] for d in docs), default='-')}\n\n"
    )
    return head + "\n".join(_part_section(doc) for doc in docs)


def main(results: Path | None, parts: Sequence[str]) -> int:
    print(render(results or RESULTS_DIR, parts), end="")
    return 0
