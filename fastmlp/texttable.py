"""Plain-text tables for the terminal: columns padded to their widest cell."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(rows: Sequence[Sequence[str]], *, n_left: int = 1, rule: bool = False) -> str:
    """Rows of cells (the first is the header) as aligned lines, two spaces between columns.

    The first ``n_left`` columns are left-aligned (names), the rest right-aligned (numbers);
    ``rule`` puts a line of dashes under the header.
    """
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if c < n_left else cell.rjust(w)
                       for c, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    if rule:
        lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
