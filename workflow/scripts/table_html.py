"""HTML rendering of a result table, for the Snakemake report.

Snakemake's report shows images, HTML and PDF inline and offers every other file (CSV, Markdown,
LaTeX) as a download only, so each table is also written as one self-contained HTML page: the
title as caption, the formatted cells, the notes as footnotes and a legend of the source tags
(`PN`, `3R`, ... from workflow/paper_numbers.yaml) that the table uses. No script, no external
resource: the report embeds the file as it is.
"""

from __future__ import annotations

import html
import re

import pandas as pd

# Numbers, signed numbers, "mean ± std", "Δ (p=...)" cells and dashes read better right-aligned.
_NUMERIC_CELL = re.compile(r"^[+\-−]?[0-9][0-9,.]*( ± [0-9.]+)?( \(.*\))?$|^—$")

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 13px;
       color: #222; margin: 12px; }
table { border-collapse: collapse; margin: 6px 0 10px 0; }
caption { caption-side: top; text-align: left; font-weight: 600; font-size: 14px; padding-bottom: 6px; }
th, td { padding: 3px 9px; border-bottom: 1px solid #ddd; white-space: nowrap; }
thead th { border-bottom: 2px solid #555; background: #f3f5f8; text-align: center; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
tr.kind-paper td, tr.kind-paper-real-data td { color: #555; font-style: italic; }
tr.kind-baseline td { color: #777; }
p.note { margin: 2px 0; max-width: 60em; color: #333; }
dl.legend { margin: 8px 0 0 0; display: grid; grid-template-columns: max-content auto; gap: 2px 10px; }
dl.legend dt { font-weight: 600; }
dl.legend dd { margin: 0; }
h4 { margin: 10px 0 2px 0; font-size: 13px; }
"""


def used_source_tags(sources: dict, frame: pd.DataFrame, notes: list[str]) -> list[str]:
    """Source tags of `sources` that appear as words in the table's cells or notes, in the order
    of `sources` (a tag such as `PN` or `DCF+SNAG` names where a published number comes from)."""
    text = " ".join([" ".join(str(v) for v in frame.to_numpy().ravel()), *notes])
    return [tag for tag in sources if re.search(rf"(?<![\w]){re.escape(tag)}(?![\w])", text)]


def legend_entries(sources: dict, tags: list[str]) -> list[tuple[str, str, str | None]]:
    """(tag, description, url or None) per tag, from paper_numbers.yaml's `sources`."""
    return [(tag, str(sources[tag].get("description", "")), sources[tag].get("url")) for tag in tags]


def legend_note(entries) -> str:
    """The legend as one line of text, for the Markdown and LaTeX footnotes."""
    return "Sources: " + "; ".join(f"{tag} = {description}" for tag, description, _ in entries) + "."


def _row_class(first_cell) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(first_cell).lower()).strip("-")
    return f' class="kind-{slug}"' if slug else ""


def _cell(value) -> str:
    text = str(value)
    css = ' class="num"' if _NUMERIC_CELL.match(text) else ""
    return f"<td{css}>{html.escape(text)}</td>"


def to_html(frame: pd.DataFrame, title: str, notes: list[str], legend) -> str:
    """A whole HTML page: caption, header, one row per frame row, footnotes, source legend."""
    lines = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>", f"<style>{STYLE}</style></head><body>",
             "<table>", f"<caption>{html.escape(title)}</caption>", "<thead><tr>"]
    lines += [f"<th>{html.escape(str(c))}</th>" for c in frame.columns]
    lines.append("</tr></thead><tbody>")
    for row in frame.itertuples(index=False):
        lines.append(f"<tr{_row_class(row[0])}>" + "".join(_cell(v) for v in row) + "</tr>")
    lines.append("</tbody></table>")
    lines += [f'<p class="note">{html.escape(note)}</p>' for note in notes]
    if legend:
        lines.append('<h4>Source tags</h4><dl class="legend">')
        for tag, description, url in legend:
            link = f' (<a href="{html.escape(url)}">{html.escape(url)}</a>)' if url else ""
            lines.append(f"<dt>{html.escape(tag)}</dt><dd>{html.escape(description)}{link}</dd>")
        lines.append("</dl>")
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"
