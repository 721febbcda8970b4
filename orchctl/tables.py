"""Tables as people and scripts read them: the same rows, drawn for a terminal or printed whole.

In a terminal, a borderless rich table whose last column (a result, a reason, what a task is
doing) takes the room the other columns leave, each of its cells on one line, cut with an ellipsis
where the terminal ends; a dim hint under the table then says what shows it whole (`--json`,
`orchctl why`). No other cell is ever cut: an id that cannot fit is folded onto a second line.

Off a terminal (a pipe, a file, a CI log), plain tab-separated lines, a header first, every cell
whole: one record per line is what `grep`, `cut -f` and `awk -F'\\t'` expect, and wrapping would
keep the text whole but break that. A tab or a line break inside a cell becomes a space.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

Cell = str | Text  # a Text for a styled cell (a task's state in its colour)
PADDING = 2  # each column of a borderless rich table has one space on either side
MIN_ROOM = 12  # the least of the last column a terminal shows
_BREAKS = re.compile(r"[\t\r\n\v\f]+")


def plain(cell: Cell) -> str:
    """A cell's text on one line, without tabs: a field of a tab-separated line."""
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return _BREAKS.sub(" ", text).strip()


class Grid:
    """A table of rows of cells, rendered by whatever console prints it (see the module's doc).

    Args:
        header: the column names; the first column holds ids, the last the long text.
        hint: what a terminal shows under the table when a cell of its last column was cut.
    """

    def __init__(self, header: Iterable[str], hint: str = "") -> None:
        self.header = list(header)
        self.hint = hint
        self.rows: list[list[Cell]] = []
        self.width = 0  # what the table drawn last takes

    def add_row(self, *cells: Cell) -> None:
        """Add a row: one cell per column."""
        self.rows.append(list(cells))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not console.is_terminal:
            yield from self.lines()
            return
        table, cut = self.table(options.max_width)
        # a terminal too narrow for the other columns: wider lines, which it wraps, not a cut id
        yield from console.render(table, options.update(width=max(options.max_width, self.width)))
        if cut and self.hint:
            yield Text(self.hint, style="dim")

    def lines(self) -> Iterator[Segment]:
        """The table as tab-separated lines, the header first."""
        header: list[Cell] = [*self.header]
        for cells in (header, *self.rows):
            yield Segment("\t".join(plain(c) for c in cells) + "\n")

    def table(self, width: int) -> tuple[Table, bool]:
        """The table for a terminal `width` columns wide, and whether a cell was cut to fit."""
        widths = [max(cell_len(plain(c)) for c in col) for col in zip(self.header, *self.rows)]
        room = max(MIN_ROOM, width - sum(w + PADDING for w in widths[:-1]) - PADDING)
        self.width = sum(w + PADDING for w in widths[:-1]) + min(widths[-1], room) + PADDING
        table = Table(box=None, header_style="bold")
        table.add_column(self.header[0], overflow="fold")  # an id: folded if it must be, never cut
        for name in self.header[1:]:
            table.add_column(name, no_wrap=True)
        cut = False
        for cells in self.rows:
            last = cells[-1].copy() if isinstance(cells[-1], Text) else Text(cells[-1])
            last.plain = plain(last)
            if last.cell_len > room:
                last.truncate(room, overflow="ellipsis")
                cut = True
            table.add_row(*cells[:-1], last)
        return table, cut
