"""A report built once as blocks and rendered twice: Markdown (images as files beside it) and one
self-contained HTML page (images embedded as base64 data, so the page can be mailed or archived alone)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

from sparsessp.report.tables import grouped_headers, html_table, html_text, markdown_table

_STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;margin:8px 0}"
    "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}td:first-child,th:first-child{text-align:left}"
    "th{background:#f2f2f2}"
)


class Document:
    """Headings, paragraphs, tables and images, collected in order for both renderings."""

    def __init__(self) -> None:
        self.md: list[str] = []
        self.html: list[str] = []

    def heading(self, level: int, text: str) -> None:
        self.md.append(f"{'#' * level} {text}")
        self.html.append(f"<h{level}>{html_text(text)}</h{level}>")

    def para(self, text: str) -> None:
        self.md.append(text)
        self.html.append(f"<p>{html_text(text)}</p>")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]],
              groups: Sequence[tuple[str, int]] | None = None) -> None:
        """A table; ``groups`` (label, column count) adds a spanning header row above the HTML table's header
        and prefixes the Markdown headers with their group's label."""
        self.md.append(markdown_table(grouped_headers(headers, groups), rows))
        self.html.append(html_table(headers, rows, groups))

    def image(self, path: Path, alt: str) -> None:
        """An image written beforehand: linked by name in Markdown, embedded in HTML."""
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        self.md.append(f"![{alt}]({Path(path).name})")
        self.html.append(
            f'<p><img src="data:image/png;base64,{data}" alt="{html_text(alt)}" style="max-width:100%"></p>'
        )

    def render(self, title: str) -> tuple[str, str]:
        """(Markdown, HTML page)."""
        md = "\n\n".join(self.md) + "\n"
        page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html_text(title)}</title>"
                f"<style>{_STYLE}</style></head><body>\n" + "\n".join(self.html) + "\n</body></html>\n")
        return md, page
