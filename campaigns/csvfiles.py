"""The one CSV writer for every file the product emits: no cell a spreadsheet would run as a formula.

Excel, LibreOffice and Google Sheets evaluate a cell starting with = + - @ (and, after trimming, tab or CR) as a
formula: an address or answer like =HYPERLINK(...) typed by anyone would run on the marketer's machine. Such cells
get a leading apostrophe, which spreadsheets show as text. Plain data keeps its form: a phone number (+ then only
digits, spaces and - ( ) /) and a negative number (-12.50) cannot call anything, so they are written as they are.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import Any, Protocol

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_DATA_RE = r"\+[0-9][0-9 ()/-]*|-[0-9]+(?:[.,][0-9]+)*(?:[eE][+-]?[0-9]+)?"
_PLAIN_DATA = re.compile(_PLAIN_DATA_RE)
# The same pattern, anchored, for PostgreSQL's ~ operator (exports format their cells in SQL).
PLAIN_DATA_PG = f"^({_PLAIN_DATA_RE})$"


class _TextSink(Protocol):
    def write(self, text: str, /) -> Any: ...


def safe_cell(value: Any) -> str:
    """value as cell text a spreadsheet will not evaluate (dates as ISO 8601, None as empty)."""
    text = "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_DATA.fullmatch(text):
        return "'" + text
    return text


class SafeWriter:
    """csv.writer whose every cell goes through safe_cell."""

    def __init__(self, sink: _TextSink) -> None:
        self._writer = csv.writer(sink)

    def writerow(self, row: Iterable[Any]) -> None:
        """Write one row of neutralised cells."""
        self._writer.writerow([safe_cell(v) for v in row])


# Exports format their cells in SQL for speed (campaigns.contacts.export_jobs); the same rule, as SQL.
_FORMULA_SQL = {"postgresql": "'=', '+', '-', '@', chr(9), chr(13)",
                "sqlite": "'=', '+', '-', '@', char(9), char(13)"}
SQLITE_FUNCTION = "rapport_safe_cell"


def safe_sql(expr: str, dialect: str) -> str:
    """SQL text of the cell expr as text ('' for NULL), neutralised exactly as safe_cell does.

    Only cells starting with a formula character need a closer look (phone numbers and negative numbers stay as
    they are): PostgreSQL matches safe_cell's pattern itself; SQLite has no regular expressions, so those few cells
    go to safe_cell, registered on the connection by register_sqlite().
    """
    t = f"coalesce(CAST(({expr}) AS TEXT), '')"
    quote = "''''"   # SQL for a one-apostrophe string
    if dialect == "postgresql":
        return (f"CASE WHEN substr({t}, 1, 1) IN ({_FORMULA_SQL[dialect]}) AND {t} !~ '{PLAIN_DATA_PG}' "
                f"THEN {quote} || {t} ELSE {t} END")
    return f"CASE WHEN substr({t}, 1, 1) IN ({_FORMULA_SQL[dialect]}) THEN {SQLITE_FUNCTION}({t}) ELSE {t} END"


def register_sqlite(dbapi_connection: Any) -> None:
    """Make safe_cell callable from SQL on this SQLite connection (for safe_sql)."""
    dbapi_connection.create_function(SQLITE_FUNCTION, 1, safe_cell, deterministic=True)


class SqlSafeWriter:
    """csv.writer for rows whose every cell safe_sql (or safe_cell) already neutralised."""

    def __init__(self, sink: _TextSink, lineterminator: str = "\n") -> None:
        self._writer = csv.writer(sink, lineterminator=lineterminator)

    def writerow(self, row: Iterable[str]) -> None:
        """Write one row as it is."""
        self._writer.writerow(row)

    def writerows(self, rows: Iterable[Iterable[str]]) -> None:
        """Write rows as they are."""
        self._writer.writerows(rows)


class CsvChunks:
    """Rows turned into text chunks for a streamed download: write rows, then take() what they made."""

    def __init__(self) -> None:
        self._buf = io.StringIO()
        self.writer = SafeWriter(self._buf)

    def writerow(self, row: Iterable[Any]) -> None:
        """Write one row of neutralised cells."""
        self.writer.writerow(row)

    def take(self) -> str:
        """The text written since the last take()."""
        out = self._buf.getvalue()
        self._buf.seek(0)
        self._buf.truncate()
        return out
