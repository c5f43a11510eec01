"""Bounce and reply mailboxes: read every message of an IMAP or POP3 mailbox, apply it (campaigns.feedback.inbound)
and delete it once its outcome is committed, so a crash re-reads at most what was not yet applied; a reply is
forwarded to its owner right after (campaigns.replies.mail)."""

from __future__ import annotations

import imaplib
import logging
import poplib
from collections.abc import Callable, Iterator
from urllib.parse import unquote, urlsplit

from campaigns.errors import ValidationError
from campaigns.feedback.bounces import BouncePolicy, OutcomeKind
from campaigns.feedback.inbound import ingest_message
from campaigns.replies import mail as reply_mail
from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)

MAILBOX_TIMEOUT = 60


def _imap_messages(url: str, limit: int) -> Iterator[tuple[bytes, Callable[[], None]]]:
    u = urlsplit(url)
    cls = imaplib.IMAP4_SSL if u.scheme == "imaps" else imaplib.IMAP4
    conn = cls(u.hostname or "localhost", u.port or (993 if u.scheme == "imaps" else 143), timeout=MAILBOX_TIMEOUT)
    try:
        if u.scheme == "imap+starttls":
            conn.starttls()
        conn.login(unquote(u.username or ""), unquote(u.password or ""))
        folder = unquote(u.path.strip("/")) or "INBOX"
        typ, _ = conn.select(folder)
        if typ != "OK":
            raise OSError(f"IMAP folder {folder!r} cannot be opened")
        _typ, data = conn.uid("SEARCH", None, "ALL")
        uids = (data[0] or b"").split()[:limit]
        for uid in uids:
            _typ, fetched = conn.uid("FETCH", uid, "(RFC822)")
            raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
            if raw is None:
                continue

            def ack(uid: bytes = uid) -> None:
                conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)")

            yield raw, ack
        conn.expunge()
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def _pop3_messages(url: str, limit: int) -> Iterator[tuple[bytes, Callable[[], None]]]:
    u = urlsplit(url)
    ssl = u.scheme == "pop3s"
    cls = poplib.POP3_SSL if ssl else poplib.POP3
    conn = cls(u.hostname or "localhost", u.port or (995 if ssl else 110), timeout=MAILBOX_TIMEOUT)
    ok = False
    try:
        conn.user(unquote(u.username or ""))
        conn.pass_(unquote(u.password or ""))
        count, _size = conn.stat()
        for i in range(1, min(count, limit) + 1):
            _resp, lines, _octets = conn.retr(i)
            yield b"\r\n".join(lines) + b"\r\n", (lambda i=i: conn.dele(i))
        ok = True
    finally:
        # POP3 deletes only at a clean QUIT; after an error, RSET keeps every message for the next poll.
        try:
            if not ok:
                conn.rset()
            conn.quit()
        except (poplib.error_proto, OSError):
            pass


def poll_mailbox(rt: Runtime, url: str, *, policy: BouncePolicy | None = None, limit: int = 500) -> int:
    """Apply every message in the mailbox at url, deleting each once applied; returns messages applied.

    url: imap://user:pass@host[:port]/Folder, imaps://…, imap+starttls://…, pop3://…, pop3s://….
    A message is deleted only after its outcome is committed; re-reading one (after a crash) changes nothing.
    """
    scheme = urlsplit(url).scheme
    if scheme in ("imap", "imaps", "imap+starttls"):
        messages = _imap_messages(url, limit)
    elif scheme in ("pop3", "pop3s"):
        messages = _pop3_messages(url, limit)
    else:
        raise ValidationError(f"mailbox URL must start with imap://, imaps://, pop3:// or pop3s://, not {scheme}://",
                              field="url")
    policy = policy or BouncePolicy.from_settings(rt.settings)
    done = 0
    for raw, ack in messages:
        with rt.session_factory() as session:
            outcome = ingest_message(session, rt.tokens, raw, policy=policy)
            session.commit()
        logger.info("mailbox message: %s", outcome.kind)
        ack()
        if outcome.kind == OutcomeKind.REPLY:   # stored: forwarding may fail now and be retried by the job
            reply_mail.send_now(rt, int(outcome.detail))
        done += 1
    return done
