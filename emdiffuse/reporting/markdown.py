"""The one Markdown table writer behind every ``results/tables/*.md``."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a pipe table: the header, its separator and one line per row of cells."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a table row has {len(row)} cells for {len(header)} columns: {row}")
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]
