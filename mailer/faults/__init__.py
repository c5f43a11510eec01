"""A fault-injecting SMTP server for proving delivery guarantees: it fails on purpose and logs what it accepted.

Faults are chosen per connection or per message by a seeded policy, so a run can be repeated, and per address by
a script (the faults of an address's successive attempts):

    421 at connect         the greeting is ``421`` and the connection closes
    451 after DATA         the whole message is read, then answered ``451`` (a temporary failure)
    drop before the dot    the DATA command is answered by a reset: the client never wrote the message
    drop after the dot     the whole message is read, then the connection is reset with no reply
    550 for addresses      chosen recipients are refused at RCPT for good
    slow replies           the reply to the end of DATA waits ``slow_seconds``

Every message answered ``250`` is appended to the log as one JSON line, flushed before the ``250`` is written,
with its Message-ID, recipients and the time its transaction started (MAIL FROM): that log is the ground truth
a harness counts deliveries from. Faults are logged too (``event`` tells them apart).

    python -m mailer.faults --port 2526 --log faults.jsonl --seed 7 --data-451 0.05 --drop-after-dot 0.01

The policy and log live in :mod:`.policy`, one SMTP conversation in :mod:`.session`, the listening server in
:mod:`.server` and the command line in :mod:`.cli`.
"""

from mailer.faults.cli import main
from mailer.faults.policy import ACCEPTED, FaultPolicy, read_log
from mailer.faults.server import FaultServer

__all__ = ["ACCEPTED", "FaultPolicy", "FaultServer", "main", "read_log"]
