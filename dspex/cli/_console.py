"""How the ``dspex`` command prints: whole rows when piped, nothing cut on any terminal."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from rich.cells import cell_len
from rich.console import Console, JustifyMethod
from rich.logging import RichHandler
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

PIPED_WIDTH = 100_000
"""The width of piped output (a file, ``tee``, a CI log): no line is wrapped and no table cut."""
RULE_WIDTH = 100


def make_console() -> Console:
    """A console on stdout: the terminal's width on a terminal, :data:`PIPED_WIDTH` when piped."""
    console = Console()
    if not console.file.isatty():
        console.width = PIPED_WIDTH
    return console


def setup_logging(console: Console) -> None:
    """Log warnings and errors on the console: rich on a terminal, plain lines when piped (rich
    would pad every line to the console's width)."""
    handler: logging.Handler
    if not console.file.isatty():
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))
    else:
        handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    handler.addFilter(_OneLine())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s")


class _OneLine(logging.Filter):
    """Crash reports as one line each: the demo tells the story, tracebacks would drown it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {record.exc_info[1]!r}"
            record.args = ()
            record.exc_info = None
        return True


def heading(console: Console, title: str) -> None:
    """A section heading: a rule with the title, at most :data:`RULE_WIDTH` columns wide."""
    console.print(Rule(Text(title)), width=RULE_WIDTH)


def print_table(
    console: Console,
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[str | Text]],
    *,
    right: Collection[str] = (),
    wrap: Collection[str] = (),
) -> None:
    """Print ``rows`` under ``columns``: as a table if it fits the console's width with only the
    ``wrap`` columns wrapped (at spaces; a word too long for its column is folded), else (a
    narrow terminal) each row as one line of ``column: value`` pairs, wrapped. No value is ever
    cut, and a piped console fits any table. Plain ``str`` cells are printed as they are (never
    read as rich markup); ``right`` names the right-aligned columns.
    """
    cells = [[cell if isinstance(cell, Text) else Text(cell) for cell in row] for row in rows]
    if title:
        console.print(Text(title, style="bold"))
    if _narrowest(columns, cells, wrap) > console.width:
        for row in cells:
            pairs = (
                Text.assemble(f"{name}: ", cell) for name, cell in zip(columns, row, strict=True)
            )
            console.print(Text("; ").join(pairs))
        return
    table = Table(box=None, pad_edge=False)
    for name in columns:
        justify: JustifyMethod = "right" if name in right else "left"
        table.add_column(name, justify=justify, no_wrap=name not in wrap, overflow="fold")
    for row in cells:
        table.add_row(*row)
    console.print(table)


def _narrowest(columns: Sequence[str], cells: list[list[Text]], wrap: Collection[str]) -> int:
    """The narrowest the table can be drawn: each column as wide as its widest line, or its
    longest word for a ``wrap`` column, and two spaces between columns."""
    width = 2 * (len(columns) - 1)
    for i, name in enumerate(columns):
        texts = [name, *(row[i].plain for row in cells)]
        parts = [
            part for text in texts for part in (text.split() if name in wrap else text.splitlines())
        ]
        width += max(map(cell_len, parts), default=0)
    return width
