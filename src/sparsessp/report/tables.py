"""Markdown and HTML tables from rows of already formatted cells."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; the first column is left-aligned, the others right-aligned."""
    align = [":---", *("---:" for _ in headers[1:])]
    lines = [
        "| " + " | ".join(_md_cell(h) for h in headers) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows),
    ]
    return "\n".join(lines)


def grouped_headers(headers: Sequence[str], groups: Sequence[tuple[str, int]] | None) -> list[str]:
    """Headers with their group's label in front (``r = 2 MSE``): a one-row header carrying a two-row one."""
    if not groups:
        return list(headers)
    labels = [label for label, span in groups for _ in range(span)]
    return [f"{label} {h}" if label else h for label, h in zip(labels, headers)]


def html_text(text: object) -> str:
    """Escape text for HTML, keeping Markdown ``**bold**`` as ``<b>``."""
    return _BOLD.sub(r"<b>\1</b>", html.escape(str(text)))


def html_table(
    headers: Sequence[object], rows: Sequence[Sequence[object]], groups: Sequence[tuple[str, int]] | None = None
) -> str:
    """A plain HTML table with the same cells as :func:`markdown_table`.

    ``groups`` adds a header row above: ``(label, span)`` pairs covering the columns left to right (a column
    group per sparse ratio, as the paper's tables have).
    """
    top = ""
    if groups:
        top = "<tr>" + "".join(f'<th colspan="{span}">{html_text(label)}</th>' for label, span in groups) + "</tr>"
    head = "".join(f"<th>{html_text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html_text(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead>{top}<tr>{head}</tr></thead><tbody>{body}</tbody></table>"

