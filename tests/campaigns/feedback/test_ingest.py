"""Bounces, complaints and mailto unsubscribes: real messages in, contact list and suppression list out.

Messages come back for mail Rapport really sent (through the SMTP sink), via the stdin command, an IMAP mailbox and
a POP3 mailbox (tiny in-process servers speaking the real protocols), and SMTP rejections at send time.
"""

from __future__ import annotations

import os
import re
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from campaigns.contacts.suppression import is_suppressed
from campaigns.feedback import ingest
from campaigns.models import Contact, ContactStatus, Event, Send, Suppression
from campaigns.reports.campaign_report import campaign_report
from campaigns.sending import lifecycle as sending
from tests.helpers import fresh

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "mailer" / "fixtures" / "bounces"


@pytest.fixture()
def sent(runtime, db_session, make_contacts, make_campaign, outbox, run_worker):
    """A campaign delivered to 4 contacts; returns (campaign, contacts, {email: outbox entry and message})."""
    topic, contacts = make_contacts(4)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    by_rcpt = {m.recipients[0]: (m, outbox.get(m.key)) for m in outbox.list()}
    return campaign, contacts, by_rcpt



def dsn_for(entry, msg, *, status: str = "5.1.1", action: str = "failed",
            diagnostic: str = "550 5.1.1 User unknown") -> bytes:
    """An RFC 3464 report as Postfix would return the message Rapport really sent."""
    rcpt = entry.recipients[0]
    original_headers = msg.raw.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n", "\n")
    return f"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {entry.envelope_from}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B-1"

--B-1
Content-Type: text/plain; charset=utf-8

This is the mail system at host mx.example.net.

<{rcpt}>: host mx.example.net said: {diagnostic}

--B-1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {rcpt}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--B-1
Content-Type: text/rfc822-headers

{original_headers}

--B-1--
""".replace("\n", "\r\n").encode()


def fixture_for(name: str, entry, msg) -> bytes:
    """A captured real-world report with its tokens replaced by those of a message Rapport sent."""
    token = re.search(r"bounces\+([\w-]+)@", entry.envelope_from).group(1)
    unsub = re.search(r"unsubscribe\+([\w-]+)@", dict(msg.headers)["List-Unsubscribe"]).group(1)
    raw = (FIXTURES / name).read_bytes()
    raw = re.sub(rb"unsubscribe\+AQAA[\w-]+", b"unsubscribe+" + unsub.encode(), raw)
    return re.sub(rb"AQAA[\w-]+", token.encode(), raw)


def ingest_committed(session, tokens, raw: bytes, **kw) -> ingest.Outcome:
    """Apply one message and commit, as the stdin command and the mailbox poller do."""
    out = ingest.ingest_message(session, tokens, raw, **kw)
    session.commit()
    return out


def contact(db_session, contact_id: int) -> Contact:
    return fresh(db_session).get(Contact, contact_id)


def test_hard_bounce_dsn_suppresses_at_once_and_survives_erasure(runtime, db_session, sent) -> None:
    campaign, contacts, by_rcpt = sent
    entry, msg = by_rcpt[contacts[0].email]
    out = ingest_committed(db_session, runtime.tokens, dsn_for(entry, msg))
    assert out.kind == "hard_bounce" and out.suppressed
    assert contact(db_session, contacts[0].id).status == ContactStatus.BOUNCED
    # The same report again (a mailbox re-read) changes nothing.
    assert ingest_committed(db_session, runtime.tokens, dsn_for(entry, msg)).kind == "duplicate"
    report = campaign_report(db_session, campaign.id)
    assert report["bounces_hard"] == 1 and report["delivered"] == 3
    # Erase the contact: the address stays suppressed, so a re-import can refuse it.
    db_session.execute(delete(Contact).where(Contact.id == contacts[0].id))
    db_session.commit()
    assert is_suppressed(db_session, contacts[0].email.upper())
    assert not is_suppressed(db_session, contacts[1].email)
    assert contacts[0].email not in str(db_session.scalars(select(Suppression)).all()[0].__dict__)


def test_a_report_arriving_after_acceptance_shows_on_the_send_row(runtime, db_session, sent) -> None:
    _campaign, contacts, by_rcpt = sent
    entry, msg = by_rcpt[contacts[0].email]
    row = fresh(db_session).scalar(select(Send).where(Send.contact_id == contacts[0].id))
    assert (row.status, row.smtp_code) == ("sent", 250)
    ingest_committed(db_session, runtime.tokens, dsn_for(entry, msg))
    row = fresh(db_session).scalar(select(Send).where(Send.contact_id == contacts[0].id))
    # Still counted as accepted by the relay (reports subtract the bounce), but the row no longer says "250".
    assert row.status == "sent" and row.smtp_code == 550
    assert row.last_error == "hard bounce reported later: 5.1.1 550 5.1.1 User unknown"


def test_soft_bounces_suppress_only_after_the_configured_count(runtime, db_session, sent, make_campaign,
                                                                outbox, run_worker) -> None:
    campaign, contacts, by_rcpt = sent
    policy = ingest.BouncePolicy(soft_limit=2)
    entry, msg = by_rcpt[contacts[1].email]
    delayed = dsn_for(entry, msg, status="4.2.2", action="delayed", diagnostic="452 4.2.2 Mailbox full")
    assert ingest_committed(db_session, runtime.tokens, delayed, policy=policy).kind == "soft_bounce"
    assert contact(db_session, contacts[1].id).status == ContactStatus.SUBSCRIBED
    # A second message to the same address soft-bounces too: now it is suppressed.
    outbox.clear()
    second = make_campaign(campaign.topics)
    sending.start(db_session, runtime, second)
    db_session.commit()
    run_worker()
    (entry2,) = [m for m in outbox.list() if m.recipients[0] == contacts[1].email]
    delayed2 = dsn_for(entry2, outbox.get(entry2.key), status="4.2.2", action="delayed",
                       diagnostic="452 4.2.2 Mailbox full")
    out = ingest_committed(db_session, runtime.tokens, delayed2, policy=policy)
    assert out.kind == "soft_bounce" and out.suppressed
    assert contact(db_session, contacts[1].id).status == ContactStatus.BOUNCED
    assert is_suppressed(db_session, contacts[1].email)


def test_real_world_reports_are_matched_by_their_tokens(runtime, db_session, sent) -> None:
    _campaign, contacts, by_rcpt = sent
    cases = [("postfix_5_1_1.eml", "hard_bounce", ContactStatus.BOUNCED),
             ("gmail_dsn_failure.eml", "hard_bounce", ContactStatus.BOUNCED),
             ("arf_yahoo_complaint.eml", "complaint", ContactStatus.COMPLAINED),
             # An out-of-office answering our mail is recorded as an auto-reply (campaigns.replies), nothing more.
             ("out_of_office.eml", "auto_reply", ContactStatus.SUBSCRIBED)]
    for (name, kind, status), c in zip(cases, contacts, strict=True):
        entry, msg = by_rcpt[c.email]
        assert ingest_committed(db_session, runtime.tokens, fixture_for(name, entry, msg)).kind == kind, name
        assert contact(db_session, c.id).status == status, name


def test_complaint_unsubscribes_suppresses_and_stops_mail(runtime, db_session, sent, make_campaign, outbox,
                                                          run_worker) -> None:
    campaign, contacts, by_rcpt = sent
    entry, msg = by_rcpt[contacts[2].email]
    assert ingest_committed(db_session, runtime.tokens,
                                 fixture_for("arf_yahoo_complaint.eml", entry, msg)).kind == "complaint"
    types = set(fresh(db_session).scalars(select(Event.type).where(Event.contact_id == contacts[2].id)))
    assert {"complaint", "unsubscribe"} <= types
    assert campaign_report(db_session, campaign.id)["complaints"] == 1
    outbox.clear()
    sending.start(db_session, runtime, make_campaign(campaign.topics))
    db_session.commit()
    run_worker()
    assert contacts[2].email not in [m.recipients[0] for m in outbox.list()] and len(outbox.list()) == 3


def test_mailto_unsubscribe_via_the_stdin_command(runtime, db_session, sent, tmp_path) -> None:
    _campaign, contacts, by_rcpt = sent
    entry, msg = by_rcpt[contacts[3].email]
    raw = fixture_for("mailto_unsubscribe.eml", entry, msg)
    s = runtime.settings
    env = dict(os.environ, DATABASE_URL=s.database_url, SECRET_KEY=s.secret_key, RAPPORT_INSTANCE=str(tmp_path),
               REDIS_URL="redis://127.0.0.1:1/0")   # ingest never needs Redis
    done = subprocess.run([sys.executable, "-m", "campaigns", "ingest"], input=raw, env=env, cwd=ROOT,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "unsubscribe"
    assert contact(db_session, contacts[3].id).status == ContactStatus.UNSUBSCRIBED
    ev = db_session.scalar(select(Event).where(Event.type == "unsubscribe"))
    assert ev.data["source"] == "mailto"
    # Garbage is accepted and ignored (an MTA must not retry it forever).
    done = subprocess.run([sys.executable, "-m", "campaigns", "ingest"], input=b"\x00\xff garbage", env=env,
                          cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stdout.decode().strip() == "ignored"


def test_smtp_rejection_at_send_time(runtime, db_session, sent) -> None:
    campaign, contacts, _ = sent
    sends = {s.contact_id: s for s in db_session.scalars(select(Send))}
    policy = ingest.BouncePolicy(soft_limit=3)
    # A policy block says nothing about the address: counted as soft, not suppressed.
    ingest.record_smtp_rejection(db_session, send_id=sends[contacts[0].id].id, contact_id=contacts[0].id,
                                 campaign_id=campaign.id, code=554, message="5.7.1 Blocked by Spamhaus",
                                 policy=policy)
    db_session.commit()   # the send path commits the rejection with the send row
    assert contact(db_session, contacts[0].id).status == ContactStatus.SUBSCRIBED
    ingest.record_smtp_rejection(db_session, send_id=sends[contacts[1].id].id, contact_id=contacts[1].id,
                                 campaign_id=campaign.id, code=550, message="5.1.1 <x>: Recipient address rejected",
                                 policy=policy)
    db_session.commit()
    assert contact(db_session, contacts[1].id).status == ContactStatus.BOUNCED
    assert is_suppressed(db_session, contacts[1].email)
    report = campaign_report(db_session, campaign.id)
    assert (report["bounces_hard"], report["bounces_soft"]) == (1, 1)


# ---------------------------------------------------------------- mailboxes


class _Mailbox:
    def __init__(self, messages: list[bytes]) -> None:
        self.messages = dict(enumerate(messages, start=1))
        self.deleted: set[int] = set()


def _serve(handler_cls, mailbox: _Mailbox):
    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server(("127.0.0.1", 0), handler_cls)
    server.mailbox = mailbox
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _IMAPHandler(socketserver.StreamRequestHandler):
    """Just enough IMAP4rev1 for imaplib: LOGIN, SELECT, UID SEARCH/FETCH/STORE, EXPUNGE, LOGOUT."""

    def handle(self) -> None:
        box: _Mailbox = self.server.mailbox
        flagged: set[int] = set()
        self.wfile.write(b"* OK IMAP4rev1 stub ready\r\n")
        for line in self.rfile:
            tag, _, rest = line.decode().strip().partition(" ")
            cmd, _, args = rest.partition(" ")
            cmd, args = cmd.upper(), args.split()
            if cmd == "CAPABILITY":
                self.wfile.write(b"* CAPABILITY IMAP4rev1\r\n")
            elif cmd == "LOGIN" and args != ["bounces", '"s3cret"'] and args != ["bounces", "s3cret"]:
                self.wfile.write(f"{tag} NO bad login\r\n".encode())
                continue
            elif cmd == "SELECT":
                self.wfile.write(f"* {len(box.messages)} EXISTS\r\n".encode())
            elif cmd == "UID" and args[0].upper() == "SEARCH":
                uids = " ".join(str(u) for u in box.messages if u not in box.deleted)
                self.wfile.write(f"* SEARCH {uids}\r\n".encode())
            elif cmd == "UID" and args[0].upper() == "FETCH":
                uid = int(args[1])
                data = box.messages[uid]
                self.wfile.write(f"* {uid} FETCH (UID {uid} RFC822 {{{len(data)}}}\r\n".encode() + data + b")\r\n")
            elif cmd == "UID" and args[0].upper() == "STORE":
                flagged.add(int(args[1]))
            elif cmd == "EXPUNGE":
                box.deleted |= flagged
            elif cmd == "LOGOUT":
                self.wfile.write(f"* BYE\r\n{tag} OK done\r\n".encode())
                return
            self.wfile.write(f"{tag} OK done\r\n".encode())


class _POP3Handler(socketserver.StreamRequestHandler):
    """Just enough POP3 for poplib: USER, PASS, STAT, RETR, DELE, RSET, QUIT (deletes apply at QUIT)."""

    def handle(self) -> None:
        box: _Mailbox = self.server.mailbox
        marked: set[int] = set()
        self.wfile.write(b"+OK POP3 stub ready\r\n")
        for line in self.rfile:
            cmd, _, arg = line.decode().strip().partition(" ")
            cmd = cmd.upper()
            if cmd == "PASS" and arg != "s3cret":
                self.wfile.write(b"-ERR bad login\r\n")
            elif cmd == "STAT":
                live = [m for u, m in box.messages.items() if u not in box.deleted]
                self.wfile.write(f"+OK {len(live)} {sum(map(len, live))}\r\n".encode())
            elif cmd == "RETR":
                data = box.messages[int(arg)].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                stuffed = re.sub(rb"(?m)^\.", b"..", data)
                self.wfile.write(b"+OK\r\n" + stuffed + (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n")
            elif cmd == "DELE":
                marked.add(int(arg))
                self.wfile.write(b"+OK\r\n")
            elif cmd == "RSET":
                marked.clear()
                self.wfile.write(b"+OK\r\n")
            elif cmd == "QUIT":
                box.deleted |= marked
                self.wfile.write(b"+OK bye\r\n")
                return
            else:
                self.wfile.write(b"+OK\r\n")


@pytest.mark.parametrize("scheme", ["imap", "pop3"])
def test_mailbox_polling_applies_and_deletes_each_report(runtime, db_session, sent, scheme) -> None:
    _campaign, contacts, by_rcpt = sent
    raws = [dsn_for(*by_rcpt[contacts[0].email]),
            fixture_for("arf_yahoo_complaint.eml", *by_rcpt[contacts[1].email]),
            fixture_for("mailto_unsubscribe.eml", *by_rcpt[contacts[2].email])]
    box = _Mailbox(raws)
    server = _serve(_IMAPHandler if scheme == "imap" else _POP3Handler, box)
    try:
        url = f"{scheme}://bounces:s3cret@127.0.0.1:{server.server_address[1]}/INBOX"
        assert ingest.poll_mailbox(runtime, url) == 3
        assert box.deleted == {1, 2, 3}
        assert ingest.poll_mailbox(runtime, url) == 0
        with pytest.raises(Exception):   # noqa: B017 - wrong password: imaplib and poplib raise their own errors
            ingest.poll_mailbox(runtime, url.replace("s3cret", "wrong"))
    finally:
        server.shutdown()
        server.server_close()
    statuses = [contact(db_session, c.id).status for c in contacts[:3]]
    assert statuses == [ContactStatus.BOUNCED, ContactStatus.COMPLAINED, ContactStatus.UNSUBSCRIBED]
