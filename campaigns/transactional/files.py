"""Attachments of a transactional message: base64 in the request, checked for size, name and type.

Only a short list of types passes, each with the file name extensions a mail program opens it with, and for
binary types the first bytes must be what the type says (a "PDF" that is an executable is refused): a receipt
API must not become a way to mail anything to anyone.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from campaigns.errors import ValidationError

MAX_FILES = 10
MAX_FILE_BYTES = 5 * 1024 * 1024         # one file, decoded
MAX_TOTAL_BYTES = 10 * 1024 * 1024       # all files of one message, decoded
MAX_FILENAME_BYTES = 150                 # UTF-8; keeps the encoded MIME parameter within a header line

# content type -> (extensions, magic prefixes; None for text, which must be UTF-8 instead)
TYPES: dict[str, tuple[tuple[str, ...], tuple[bytes, ...] | None]] = {
    "application/pdf": ((".pdf",), (b"%PDF-",)),
    "image/png": ((".png",), (b"\x89PNG\r\n\x1a\n",)),
    "image/jpeg": ((".jpg", ".jpeg"), (b"\xff\xd8\xff",)),
    "image/gif": ((".gif",), (b"GIF87a", b"GIF89a")),
    "text/plain": ((".txt",), None),
    "text/csv": ((".csv",), None),
    "text/calendar": ((".ics",), None),
}


class TooLarge(ValidationError):
    """A file, or all files together, over the size limit (the API answers 413)."""


@dataclass(frozen=True)
class File:
    filename: str
    content_type: str
    data: bytes


def _filename(raw: str, field: str) -> str:
    name = unicodedata.normalize("NFC", raw.strip())
    if not name or len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise ValidationError(f"a file name is 1 to {MAX_FILENAME_BYTES} bytes", field=field)
    if any(c in name for c in "/\\") or any(unicodedata.category(c)[0] == "C" for c in name) or name[0] == ".":
        raise ValidationError("a file name has no path, no control characters and does not start with a dot",
                              field=field)
    return name


def check(items: Sequence[Mapping[str, Any]]) -> list[File]:
    """The decoded files; ValidationError (TooLarge for sizes) naming the field of the first problem."""
    if len(items) > MAX_FILES:
        raise ValidationError(f"at most {MAX_FILES} attachments", field="attachments")
    files: list[File] = []
    total = 0
    for i, item in enumerate(items):
        where = f"attachments.{i}"
        name = _filename(str(item.get("filename", "")), f"{where}.filename")
        ctype = str(item.get("content_type", "")).strip().lower()
        if ctype not in TYPES:
            raise ValidationError(f"{ctype[:100]!r} is not an accepted type; accepted: {', '.join(TYPES)}",
                                  field=f"{where}.content_type")
        extensions, magic = TYPES[ctype]
        if not name.lower().endswith(extensions):
            raise ValidationError(f"a {ctype} file's name ends in {' or '.join(extensions)}",
                                  field=f"{where}.filename")
        content = str(item.get("content", ""))
        if len(content) > (MAX_FILE_BYTES + 2) // 3 * 4 + 4:
            raise TooLarge(f"{name} is larger than {MAX_FILE_BYTES // 1024 // 1024} MB", field=f"{where}.content")
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(f"the content of {name} is not base64", field=f"{where}.content") from None
        if not data:
            raise ValidationError(f"{name} is empty", field=f"{where}.content")
        if len(data) > MAX_FILE_BYTES:
            raise TooLarge(f"{name} is larger than {MAX_FILE_BYTES // 1024 // 1024} MB", field=f"{where}.content")
        if magic is not None and not data.startswith(magic):
            raise ValidationError(f"{name} is not a {ctype} file (its first bytes say otherwise)",
                                  field=f"{where}.content")
        if magic is None:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError(f"{name} is not UTF-8 text", field=f"{where}.content") from None
            if "\x00" in text:
                raise ValidationError(f"{name} is not text (it holds NUL bytes)", field=f"{where}.content")
        total += len(data)
        if total > MAX_TOTAL_BYTES:
            raise TooLarge(f"the attachments together are larger than {MAX_TOTAL_BYTES // 1024 // 1024} MB",
                           field="attachments")
        files.append(File(name, ctype, data))
    return files


def stored(files: Sequence[File]) -> list[dict[str, Any]]:
    """How files are kept on the message row until it is sent."""
    return [{"filename": f.filename, "content_type": f.content_type, "size": len(f.data),
             "data": base64.b64encode(f.data).decode("ascii")} for f in files]


def loaded(rows: Sequence[Mapping[str, Any]]) -> list[File]:
    """The files of a message row (those whose data is still there)."""
    return [File(r["filename"], r["content_type"], base64.b64decode(r["data"])) for r in rows if r.get("data")]


def described(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The files of a message row without their data (what the status read-back shows, and what stays)."""
    return [{"filename": r["filename"], "content_type": r["content_type"], "size": int(r.get("size", 0))}
            for r in rows]
