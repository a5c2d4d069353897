"""Rendering a report page: JSON data, CSV, TSV and an aligned text table.

Kept apart from gathering so each format is a plain function of rows; the file formats
neutralize cells a spreadsheet would run as formulas.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from trinity_beast.services.reports.filters import ReportFilters
from trinity_beast.services.reports.gather import Page, Row

COLUMNS = (
    "period",
    "api_key_id",
    "endpoint",
    "asset",
    "protocol",
    "status",
    "requests",
    "latency_avg_ms",
    "latency_max_ms",
)
CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "text": "text/plain; charset=utf-8",
}


def neutralize(value: Any) -> Any:
    """A spreadsheet must not run a cell as a formula: prefix risky text with an apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _cells(rows: Iterable[Row]) -> Iterable[list[Any]]:
    for row in rows:
        d = row.as_dict()
        yield [neutralize(d[c]) for c in COLUMNS]


def render_csv(rows: Sequence[Row]) -> bytes:
    """RFC 4180: CRLF lines, a header row, fields quoted when they need it, UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, dialect="excel", lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(_cells(rows))
    return out.getvalue().encode("utf-8")


def render_tsv(rows: Sequence[Row]) -> bytes:
    """Tab-separated, one line per row, no quoting: tabs and newlines never occur in a field."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
    writer.writerow(COLUMNS)
    for cells in _cells(rows):
        writer.writerow([re.sub(r"[\t\r\n]", " ", str(c)) for c in cells])
    return out.getvalue().encode("utf-8")


def render_text(rows: Sequence[Row], total: int) -> bytes:
    """An aligned table for people: text left, numbers right, a line under the header."""
    table = [list(COLUMNS)] + [[str(row.as_dict()[c]) for c in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    numeric = {"status", "requests", "latency_avg_ms", "latency_max_ms"}

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(w) if COLUMNS[i] in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(table[0]), "  ".join("-" * w for w in widths)]
    out.extend(line(cells) for cells in table[1:])
    out.append("")
    out.append(f"{len(rows)} row(s) of {total}")
    return ("\n".join(out) + "\n").encode("utf-8")


def filename(f: ReportFilters) -> str:
    def day(ts: float) -> str:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y%m%d")

    ext = {"csv": "csv", "tsv": "tsv", "text": "txt", "json": "json"}[f.format]
    return f"usage-{day(f.start)}-{day(max(f.end - 1, f.start))}-{f.granularity}.{ext}"


def page_data(f: ReportFilters, page: Page) -> dict[str, Any]:
    """The JSON report's `data`."""
    return {
        "rows": [row.as_dict() for row in page.rows],
        "paging": {"total": page.total, "limit": f.limit, "returned": len(page.rows), "next_cursor": page.next_cursor},
        "filters": f.echo(),
        "includes_unsynced": page.includes_unsynced,
        "missing": list(page.missing),
    }


def render_file(f: ReportFilters, page: Page) -> tuple[bytes, dict[str, str]]:
    """A CSV, TSV or text report and its headers (paging goes in headers for files)."""
    if f.format == "csv":
        body = render_csv(page.rows)
    elif f.format == "tsv":
        body = render_tsv(page.rows)
    else:
        body = render_text(page.rows, page.total)
    headers = {
        "Content-Disposition": f'attachment; filename="{filename(f)}"',
        "X-Total-Count": str(page.total),
        "X-Page-Limit": str(f.limit),
        "X-Includes-Unsynced": "true" if page.includes_unsynced else "false",
    }
    if page.missing:
        headers["X-Missing"] = ",".join(page.missing)
    if page.next_cursor:
        headers["X-Next-Cursor"] = page.next_cursor
    return body, headers
