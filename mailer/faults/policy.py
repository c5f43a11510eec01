"""What goes wrong and what is written down: the seeded :class:`FaultPolicy` that picks a fault per connection,
message or scripted address, and the append-only JSON-lines log a harness counts deliveries from.

A policy is a pure function of its seed and the keys it is asked about, so a run can be repeated exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

ACCEPTED = "accepted"
_MESSAGE_FAULTS = ("data_451", "drop_before_dot", "drop_after_dot")


@dataclass(frozen=True)
class FaultPolicy:
    """Which faults happen: shares drawn per connection or message from ``seed``, plus per-address scripts."""

    seed: int = 0
    connect_421: float = 0.0          # share of connections greeted with 421
    data_451: float = 0.0             # share of messages answered 451 after the final dot
    drop_before_dot: float = 0.0      # share of messages whose connection is reset mid-DATA
    drop_after_dot: float = 0.0       # share of messages read in full, then reset without a reply
    slow: float = 0.0                 # share of end-of-DATA replies delayed by slow_seconds
    slow_seconds: float = 1.0
    reject: frozenset[str] = frozenset()             # recipients refused with 550 at RCPT, every time
    # address -> the faults of its 1st, 2nd, … attempt ("ok" for none); later attempts follow the shares.
    script: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Reject shares that cannot be probabilities and script entries that name no fault."""
        for name in ("connect_421", "data_451", "drop_before_dot", "drop_after_dot", "slow"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a share from 0 to 1, not {value!r}")
        if self.data_451 + self.drop_before_dot + self.drop_after_dot > 1.0:
            raise ValueError("data_451, drop_before_dot and drop_after_dot must add up to at most 1")
        for address, faults in self.script.items():
            unknown = set(faults) - {*_MESSAGE_FAULTS, "ok"}
            if unknown:
                raise ValueError(f"script for {address}: unknown faults {sorted(unknown)}")

    def draw(self, kind: str, key: str) -> float:
        """A number in [0, 1) fixed by seed, kind and key: the same run gets the same faults however it interleaves."""
        digest = hashlib.blake2b(f"{self.seed}\0{kind}\0{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def message_fault(self, recipients: Sequence[str], attempt: int) -> str:
        """The fault for a message to recipients on their attempt-th try ("" for none)."""
        for address in recipients:
            steps = self.script.get(address.lower())
            if steps is not None and attempt <= len(steps):
                step = steps[attempt - 1]
                return "" if step == "ok" else step
        u = self.draw("message", f"{','.join(recipients)}#{attempt}")
        for name in _MESSAGE_FAULTS:
            share = getattr(self, name)
            if u < share:
                return name
            u -= share
        return ""


class Log:
    """The append-only JSON-lines log; each line is flushed before the client hears the reply it records."""

    def __init__(self, path: str | os.PathLike[str] | None, fsync: bool) -> None:
        self._fh: IO[str] | None = open(path, "a", encoding="utf-8") if path else None
        self._fsync = fsync
        self.counts: Counter[str] = Counter()
        self.accepted: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        """Count the record and append it to the file."""
        with self._lock:
            self.counts[record["event"]] += 1
            if record["event"] == ACCEPTED:
                self.accepted.append(record)
            if self._fh is not None:
                self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
                self._fh.flush()
                if self._fsync:
                    os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def read_log(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The records of a fault log, oldest first; a torn last line (a killed writer) is skipped."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n"):
                yield json.loads(line)
