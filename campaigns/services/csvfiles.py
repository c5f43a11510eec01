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
_PLAIN_DATA = re.compile(r"\+[0-9][0-9 ()/-]*|-[0-9]+(?:[.,][0-9]+)*(?:[eE][+-]?[0-9]+)?")


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
