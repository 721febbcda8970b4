"""Fake agent that edits files in its working directory, as a coding agent would.

usage: edit.py FILE=TEXT [FILE=TEXT ...]   (each FILE relative to the cwd; TEXT replaces its content)
Prints what it saw of `.env` and `setup.txt` (copied in / made by setup), then a result line.
"""

import os
import sys
from pathlib import Path

for name in (".env", "setup.txt"):
    if os.path.exists(name):
        print(f"saw {name}: {Path(name).read_text().strip()}")
for spec in sys.argv[1:]:
    name, _, text = spec.partition("=")
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    Path(name).write_text(text + "\n")
print(f"edited {len(sys.argv) - 1} file(s) in {os.getcwd()}")
