"""Tables: whole tab-separated lines off a terminal; in one, the last column cut to fit with a hint,
and never an id cut, however narrow the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from orchctl.tables import Grid

LONG_ID = "hdr-__init__.very-long-module-name-of-a-generated-task"
RESULT = "exit code 3 (gave up after 1 attempt): " + "the last line the task printed, " * 4


def grid() -> Grid:
    table = Grid(["TASK", "STATE", "RESULT"], hint="(cut: `orchctl why RUN TASK` shows it all)")
    table.add_row(LONG_ID, Text("failed", style="red"), RESULT)
    table.add_row("b", "completed", "a\tb\nc")
    return table


def printed(table: Grid, width: int, terminal: bool) -> str:
    console = Console(record=True, width=width, color_system=None, force_terminal=terminal)
    console.print(table, crop=False)
    return console.export_text()


def test_off_a_terminal_each_row_is_one_line_of_whole_tab_separated_cells() -> None:
    assert printed(grid(), 40, terminal=False).splitlines() == [
        "TASK\tSTATE\tRESULT",
        f"{LONG_ID}\tfailed\t{RESULT.strip()}",
        "b\tcompleted\ta b c",  # a tab or a line break in a cell would split the record
    ]


def test_in_a_terminal_the_last_column_is_cut_to_fit_with_a_hint() -> None:
    lines = printed(grid(), 120, terminal=True).splitlines()
    assert all(len(line) <= 120 for line in lines)
    assert lines[1].split()[0] == LONG_ID and lines[1].rstrip().endswith("…")
    assert lines[2].split() == ["b", "completed", "a", "b", "c"]
    assert lines[3] == "(cut: `orchctl why RUN TASK` shows it all)"
    whole = printed(grid(), 400, terminal=True)  # it all fits: nothing cut, no hint
    assert RESULT.strip() in whole and "…" not in whole and "orchctl why" not in whole


def test_a_terminal_too_narrow_for_the_ids_gets_longer_lines_not_a_cut_id() -> None:
    lines = printed(grid(), 30, terminal=True).splitlines()
    assert lines[1].split()[:2] == [LONG_ID, "failed"]
    assert len(lines[1].rstrip()) > 30  # the terminal wraps it
