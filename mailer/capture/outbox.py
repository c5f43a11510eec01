"""The Maildir-style outbox on disk: messages are written to tmp/ and renamed into new/ with an envelope sidecar, so
readers in other processes never see half a message; listings read headers only, one page at a time.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage, Message
from typing import Any

from mailer.capture.entries import (
    ENV_SUFFIX,
    KEY_RE,
    MSG_SUFFIX,
    NAME_RE,
    STAMP_LEN,
    OutboxEntry,
    OutboxMessage,
    arrival_time,
    body_parser,
    clean_text,
    decode_header_value,
    header_block_of,
    parse_headers,
    part_text,
    read_header_block,
    sort_key,
)

logger = logging.getLogger(__name__)

# Shared by every Outbox in the process so two instances on one directory never produce the same key;
# next() on itertools.count is atomic under the GIL, so handler threads need no lock.
_counter = itertools.count(1)

# Stale tmp/ files older than this are leftovers of a crashed writer (Maildir convention is 36 h).
_STALE_TMP_SECONDS = 3600


class Outbox:
    """A directory of captured messages.

    tmp/, new/ and cur/ form a real Maildir (messages are delivered to new/ and stay there), so mutt and
    friends can open it; envelopes live beside it in envelopes/ as <key>.env.json.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open the outbox at path, creating its directories as needed."""
        self.path = os.fspath(path)
        self._tmp = os.path.join(self.path, "tmp")
        self._new = os.path.join(self.path, "new")
        self._cur = os.path.join(self.path, "cur")
        self._env = os.path.join(self.path, "envelopes")
        for directory in (self._tmp, self._new, self._cur, self._env):
            os.makedirs(directory, exist_ok=True)

    def __repr__(self) -> str:
        return f"Outbox({self.path!r})"

    def store(self, envelope_from: str, recipients: Sequence[str], data: bytes) -> str:
        """Store one message exactly as received and return its key."""
        key = f"{time.time_ns()}.{os.getpid()}.{next(_counter)}"
        envelope = json.dumps({"from": envelope_from, "to": list(recipients)}).encode("ascii")
        # Readers look for an envelope only after the message is visible in new/, and the message is
        # renamed there only after this write has finished, so the sidecar needs no tmp/ round trip.
        envelope_path = self._envelope_path(key)
        _write_new_file(envelope_path, envelope)
        tmp_path = os.path.join(self._tmp, key + MSG_SUFFIX)
        try:
            _write_new_file(tmp_path, data)
            # Maildir delivery: the rename is atomic, so readers never see a partial message.
            os.rename(tmp_path, os.path.join(self._new, key + MSG_SUFFIX))
        except BaseException:
            _unlink(tmp_path)
            _unlink(envelope_path)
            raise
        return key

    def _keys(self) -> list[str]:
        """Keys of all delivered messages, in directory order."""
        # One regex pass over the joined names runs at C speed; a Python loop over 100,000 names costs
        # several times the listdir itself. "/" cannot occur in a file name, so it is a safe separator.
        return NAME_RE.findall("/".join(os.listdir(self._new)))

    def count(self) -> int:
        """Number of captured messages."""
        return len(self._keys())

    def list(self, *, limit: int = 50, before: str | None = None) -> list[OutboxEntry]:
        """Newest-first page of summaries; pass the last key of a page as before to get the next one."""
        if limit < 0:
            raise ValueError("limit must not be negative")
        keys = self._keys()
        if before is not None:
            if not isinstance(before, str) or not KEY_RE.fullmatch(before):
                raise ValueError(f"invalid outbox key: {before!r}")
            # Keys are "<19-digit time_ns>.<pid>.<counter>", so plain string comparison against the
            # timestamp prefix orders by time; only keys sharing before's timestamp need a numeric look.
            stamp = before[:STAMP_LEN]
            bound = sort_key(before)
            same_stamp = filter(stamp.__le__, filter((stamp + "/").__gt__, keys))
            keys = [*filter(stamp.__gt__, keys), *(k for k in same_stamp if sort_key(k) < bound)]
        # String order picks the newest timestamps without a Python-level key per file; then every key
        # sharing the oldest selected timestamp joins in, and the few candidates are ordered exactly.
        newest = heapq.nlargest(limit, keys)
        if not newest:
            return []
        candidates = filter(newest[-1][:STAMP_LEN].__le__, keys)
        entries: list[OutboxEntry] = []
        for key in sorted(candidates, key=sort_key, reverse=True)[:limit]:
            try:
                entries.append(self._entry(key))
            except FileNotFoundError:
                # Removed by clear() between the directory scan and the read.
                continue
        return entries

    def search(self, match: Callable[[OutboxEntry], bool], *, limit: int = 50, before: str | None = None,
               scan: int = 20_000) -> tuple[list[OutboxEntry], str | None]:
        """Newest-first entries (older than before) for which match() is true, reading at most `scan` summaries.

        Returns the entries and the key to pass as before to continue (None when every older message was read).
        """
        if before is not None and (not isinstance(before, str) or not KEY_RE.fullmatch(before)):
            raise ValueError(f"invalid outbox key: {before!r}")
        keys = sorted(self._keys(), key=sort_key, reverse=True)
        if before is not None:
            bound = sort_key(before)
            keys = [k for k in keys if sort_key(k) < bound]
        found: list[OutboxEntry] = []
        for i, key in enumerate(keys[:scan]):
            try:
                entry = self._entry(key)
            except FileNotFoundError:
                continue
            if match(entry):
                found.append(entry)
                if len(found) >= limit:
                    return found, key if i + 1 < len(keys) else None
        return found, keys[scan - 1] if len(keys) > scan else None

    def get(self, key: str) -> OutboxMessage:
        """Full message for key; KeyError if the key is malformed or unknown."""
        path = self._message_path(key)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise KeyError(key) from None
        header_msg = parse_headers(header_block_of(raw))
        headers = [(name, decode_header_value(name, value)) for name, value in header_msg.items()]
        try:
            body = body_parser.parsebytes(raw)
        except Exception:
            logger.warning("Cannot parse captured message %s", key, exc_info=True)
            html = text = None
        else:
            assert isinstance(body, EmailMessage)
            html = part_text(body, "html")
            text = part_text(body, "plain")
        envelope_from, recipients = self._envelope(key)
        return OutboxMessage(
            **self._summary_fields(key, header_msg, envelope_from, recipients, len(raw)),
            raw=raw,
            headers=headers,
            html=html,
            text=text,
        )

    def clear(self) -> None:
        """Delete every captured message and envelope (and stale temporary files)."""
        # Messages before envelopes, so a concurrent reader never sees a listed message lose its envelope.
        for directory in (self._new, self._cur, self._env):
            with os.scandir(directory) as it:
                paths = [entry.path for entry in it]
            for path in paths:
                _unlink(path)
        # Fresh tmp/ files belong to writers in flight; deleting them would make their rename fail.
        cutoff = time.time() - _STALE_TMP_SECONDS
        with os.scandir(self._tmp) as it:
            stale = [entry.path for entry in it if _mtime(entry) < cutoff]
        for path in stale:
            _unlink(path)

    def _message_path(self, key: str) -> str:
        """File path for a key, refusing anything that is not a well-formed key (path traversal)."""
        if not isinstance(key, str) or not KEY_RE.fullmatch(key):
            raise KeyError(key)
        return os.path.join(self._new, key + MSG_SUFFIX)

    def _envelope_path(self, key: str) -> str:
        """Sidecar path for an already validated key."""
        return os.path.join(self._env, key + ENV_SUFFIX)

    def _entry(self, key: str) -> OutboxEntry:
        """Summary for key, reading only the header section of the message."""
        with open(self._message_path(key), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            block = read_header_block(f)
        envelope_from, recipients = self._envelope(key)
        return OutboxEntry(**self._summary_fields(key, parse_headers(block), envelope_from, recipients, size))

    def _envelope(self, key: str) -> tuple[str, tuple[str, ...]]:
        """Envelope sender and recipients from the sidecar; empty if it is missing or unreadable."""
        try:
            with open(self._envelope_path(key), "rb") as f:
                envelope = json.load(f)
            return clean_text(str(envelope["from"])), tuple(clean_text(str(r)) for r in envelope["to"])
        except (OSError, ValueError, KeyError, TypeError):
            # Messages dropped into new/ by other tools have no sidecar; they are still worth showing.
            return "", ()

    @staticmethod
    def _summary_fields(
        key: str, header_msg: Message, envelope_from: str, recipients: tuple[str, ...], size: int
    ) -> dict[str, Any]:
        """Constructor arguments shared by OutboxEntry and OutboxMessage."""

        def header(name: str) -> str:
            value = header_msg.get(name)
            return "" if value is None else decode_header_value(name, str(value))

        return {
            "key": key,
            "received_at": arrival_time(key),
            "envelope_from": envelope_from,
            "recipients": recipients,
            "subject": header("Subject"),
            "from_": header("From"),
            "to": header("To"),
            "size": size,
            "feedback_id": header("Feedback-ID"),
        }


def _write_new_file(path: str, data: bytes) -> None:
    """Create path (which must not exist) holding data."""
    # Raw fd I/O skips the buffered-file objects, measurably cheaper at 1,000 messages/s. No fsync: a
    # demo/test capture does not need to survive power loss, and fsync would cap throughput far lower.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        _unlink(path)
        raise
    os.close(fd)


def _unlink(path: str) -> None:
    """Remove a file that a concurrent clear() may already have removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _mtime(entry: os.DirEntry[str]) -> float:
    """Modification time of a directory entry, or +inf if it vanished meanwhile."""
    try:
        return entry.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
