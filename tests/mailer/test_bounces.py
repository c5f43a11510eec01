"""Tests for mailer.bounces: DSN, ARF, non-standard bounces, auto-replies and mailto unsubscribes."""

import contextlib
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.bounces import (
    MAX_DIAGNOSTIC,
    Feedback,
    FeedbackKind,
    classify_smtp_reply,
    extract_token,
    parse_feedback,
)

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
HARD, SOFT = FeedbackKind.HARD_BOUNCE, FeedbackKind.SOFT_BOUNCE


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def drop_headers(raw: bytes, *names: str) -> bytes:
    """Remove top-level header fields (with their continuation lines) to force later token sources."""
    head, sep, body = raw.partition(b"\n\n")
    kept: list[bytes] = []
    skipping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower() in {n.lower().encode() for n in names}
        if not skipping:
            kept.append(line)
    return b"\n".join(kept) + sep + body


def assert_bounded(fb: Feedback) -> None:
    assert isinstance(fb, Feedback)
    assert isinstance(fb.kind, FeedbackKind)
    assert fb.token is None or 1 <= len(fb.token) <= 256
    assert fb.recipient is None or len(fb.recipient) <= 320
    assert fb.status is None or len(fb.status) <= 11
    assert fb.smtp_code is None or 200 <= fb.smtp_code <= 599
    assert fb.diagnostic is None or len(fb.diagnostic) <= MAX_DIAGNOSTIC
    assert fb.message_id is None or len(fb.message_id) <= 998
    assert fb.feedback_type is None or len(fb.feedback_type) <= 64


@contextmanager
def no_fallback() -> Iterator[None]:
    """Fail if parse_feedback had to use its catch-all: garbage should be handled, not survived."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("mailer.bounces")
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
    assert not records, records[0].exc_info


# --- fixtures -----------------------------------------------------------------------------------------------

# name: (kind, token, recipient, status, smtp_code, message_id)
EXPECTED = {
    "postfix_5_1_1.eml": (
        HARD, "AQAAAAEAAAAC3q2-7w", "jane.doe@example.org", "5.1.1", 550,
        "<AQAAAAEAAAAC3q2-7w@mail.example.com>",
    ),
    "postfix_4_2_2_delayed.eml": (
        SOFT, "AQAAAAEAAAAD_k9ZpwXc41Rt", "sam.okafor@example.net", "4.2.2", 452,
        "<AQAAAAEAAAAD_k9ZpwXc41Rt@mail.example.com>",
    ),
    "gmail_dsn_failure.eml": (
        HARD, "AQAAAAIAAAAB8xQ-LgVt20Ka", "chris.noone@example.net", "5.1.1", 550,
        "<AQAAAAIAAAAB8xQ-LgVt20Ka@mail.example.com>",
    ),
    "exim_text_bounce.eml": (
        HARD, "AQAAAAMAAAAF2bRw_Ad1xQe9", "tom.baker@example.net", "5.1.1", 550,
        "<AQAAAAMAAAAF2bRw_Ad1xQe9@mail.example.com>",
    ),
    "qmail_bounce.eml": (
        HARD, "AQAAAAMAAAAG7yTe-QmB3s0L", "bob.vance@example.net", "5.1.1", None,
        "<AQAAAAMAAAAG7yTe-QmB3s0L@mail.example.com>",
    ),
    # Sent to the visible From (news@), not the VERP return path: the token comes from the attached original.
    "exchange_ndr.eml": (
        HARD, "AQAAAAQAAAAH0cV3nA1fLk8w", "priya.raman@contoso.example", "5.1.1", 550,
        "<AQAAAAQAAAAH0cV3nA1fLk8w@mail.example.com>",
    ),
    # Reaches the plain FBL mailbox: the token comes from the embedded original's X-Rapport-ID.
    "arf_yahoo_complaint.eml": (
        FeedbackKind.COMPLAINT, "AQAAAAUAAAAJ4kL_8wQy2Zr6", "lee.park@ymail.example", None, None,
        "<AQAAAAUAAAAJ4kL_8wQy2Zr6@mail.example.com>",
    ),
    "out_of_office.eml": (
        FeedbackKind.AUTO_REPLY, "AQAAAAYAAAAK6mN2bQ0tVx1e", "priya.raman@contoso.example", None, None,
        "<AQAAAAYAAAAK6mN2bQ0tVx1e@mail.example.com>",
    ),
    "mailto_unsubscribe.eml": (
        FeedbackKind.UNSUBSCRIBE, "AQAAAAcAAAAL1pQ-3gR8sTy4", "lee.park@example.org", None, None, None,
    ),
    "no_clue.eml": (FeedbackKind.UNKNOWN, None, None, None, None, None),
}


def test_every_fixture_has_expectations():
    assert {p.name for p in FIXTURES.glob("*.eml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_classification(name):
    kind, token, recipient, status, smtp_code, message_id = EXPECTED[name]
    fb = parse_feedback(load(name))
    assert (fb.kind, fb.token, fb.recipient, fb.status, fb.smtp_code, fb.message_id) == (
        kind, token, recipient, status, smtp_code, message_id,
    )
    assert_bounded(fb)


def test_dsn_diagnostic_is_the_remote_reply_without_address_type():
    fb = parse_feedback(load("postfix_5_1_1.eml"))
    assert fb.diagnostic == (
        "550 5.1.1 <jane.doe@example.org>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    assert fb.feedback_type is None


def test_arf_reports_feedback_type():
    assert parse_feedback(load("arf_yahoo_complaint.eml")).feedback_type == "abuse"


def test_gmail_multiline_diagnostic_is_unfolded_and_short():
    fb = parse_feedback(load("gmail_dsn_failure.eml"))
    assert fb.diagnostic.startswith("550-5.1.1 The email account that you tried to reach does not exist.")
    assert "\n" not in fb.diagnostic and len(fb.diagnostic) <= MAX_DIAGNOSTIC


def test_codes_in_the_returned_newsletter_are_ignored():
    # The Exim copy of the newsletter mentions "4.4.7" and "450"; the Gmail one "4.2.2" and "550 bug fixes".
    assert parse_feedback(load("exim_text_bounce.eml")).status == "5.1.1"
    assert parse_feedback(load("gmail_dsn_failure.eml")).status == "5.1.1"


# --- where the token comes from -----------------------------------------------------------------------------


def test_envelope_recipient_wins_over_headers():
    fb = parse_feedback(load("postfix_5_1_1.eml"), "bounces+ENVELOPEtoken_123@mail.example.com")
    assert fb.token == "ENVELOPEtoken_123"
    assert fb.kind is HARD


def test_non_verp_envelope_falls_back_to_headers():
    fb = parse_feedback(load("postfix_5_1_1.eml"), "bounces@mail.example.com")
    assert fb.token == "AQAAAAEAAAAC3q2-7w"


@pytest.mark.parametrize("name", ["postfix_5_1_1.eml", "gmail_dsn_failure.eml", "postfix_4_2_2_delayed.eml"])
def test_token_from_returned_original_when_delivery_headers_have_none(name):
    raw = drop_headers(load(name), "To", "Delivered-To")
    fb = parse_feedback(raw)
    assert fb.token == EXPECTED[name][1]
    assert fb.kind is EXPECTED[name][0]


def test_token_from_copy_inlined_in_text_bounce():
    raw = drop_headers(load("exim_text_bounce.eml"), "To", "Envelope-to")
    fb = parse_feedback(raw)
    assert fb.token == "AQAAAAMAAAAF2bRw_Ad1xQe9"
    assert fb.kind is HARD


def test_token_from_original_return_path_without_rapport_id():
    raw = load("exchange_ndr.eml").replace(b"X-Rapport-ID: AQAAAAQAAAAH0cV3nA1fLk8w\n", b"")
    assert parse_feedback(raw).token == "AQAAAAQAAAAH0cV3nA1fLk8w"


def test_verp_token_case_is_preserved():
    raw = load("postfix_5_1_1.eml").replace(b"bounces+AQAAAAEAAAAC3q2-7w@", b"BOUNCES+AQAAAAEAAAAC3q2-7w@")
    assert parse_feedback(raw).token == "AQAAAAEAAAAC3q2-7w"


# --- unsubscribe and auto-replies ---------------------------------------------------------------------------


def test_unsubscribe_by_envelope_when_to_header_is_elsewhere():
    raw = load("mailto_unsubscribe.eml").replace(
        b"To: unsubscribe+AQAAAAcAAAAL1pQ-3gR8sTy4@mail.example.com", b"To: list@mail.example.com"
    )
    raw = drop_headers(raw, "Delivered-To", "Received")
    fb = parse_feedback(raw, "unsubscribe+AQAAAAcAAAAL1pQ-3gR8sTy4@mail.example.com")
    assert (fb.kind, fb.token) == (FeedbackKind.UNSUBSCRIBE, "AQAAAAcAAAAL1pQ-3gR8sTy4")


def test_unsubscribe_address_beats_auto_submitted():
    # Mail clients may mark the unsubscribe request as auto-generated; the address alone shows intent.
    raw = load("mailto_unsubscribe.eml").replace(
        b"Subject: Unsubscribe\n", b"Subject: Unsubscribe\nAuto-Submitted: auto-generated\n"
    )
    assert parse_feedback(raw).kind is FeedbackKind.UNSUBSCRIBE


def simple(headers: str, body: str = "Hello.\n") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).encode()


@pytest.mark.parametrize(
    "extra",
    [
        "Subject: Re: Your March digest\nX-Autoreply: yes",
        "Subject: Re: Your March digest\nPrecedence: auto_reply",
        "Subject: Re: Your March digest\nAuto-Submitted: auto-replied",
        "Subject: Out of Office",
        "Subject: Abwesenheitsnotiz: Your March digest",
    ],
)
def test_auto_replies(extra):
    raw = simple(f"From: Ann <ann@example.org>\nTo: bounces+TOKEN_ar-1@mail.example.com\n{extra}")
    fb = parse_feedback(raw)
    assert (fb.kind, fb.token, fb.recipient) == (FeedbackKind.AUTO_REPLY, "TOKEN_ar-1", "ann@example.org")
    assert fb.status is None and fb.smtp_code is None


def test_auto_submitted_alone_does_not_hide_a_bounce():
    # Postfix and Exim mark their bounces Auto-Submitted: auto-replied too.
    for name in ("postfix_5_1_1.eml", "exim_text_bounce.eml"):
        assert parse_feedback(load(name)).kind is HARD


def test_read_receipt_is_not_a_bounce():
    raw = simple(
        "From: ann@example.org\nTo: bounces+TOKEN_mdn@mail.example.com\nSubject: Read: Your March digest\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"',
        "--b\nContent-Type: text/plain\n\nYour message was read.\n\n--b\n"
        "Content-Type: message/disposition-notification\n\nReporting-UA: mail.example.org\n"
        "Final-Recipient: rfc822; ann@example.org\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\n\n--b--\n",
    )
    fb = parse_feedback(raw)
    assert (fb.kind, fb.token) == (FeedbackKind.AUTO_REPLY, "TOKEN_mdn")


# --- DSN details --------------------------------------------------------------------------------------------


def dsn(*recipient_blocks: str, to: str = "bounces+TOKEN_dsn@mail.example.com") -> bytes:
    blocks = "\n\n".join(b.strip("\n") for b in recipient_blocks)
    return simple(
        f'From: MAILER-DAEMON@mta.example.net\nTo: {to}\nSubject: Delivery report\nMIME-Version: 1.0\n'
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
        "--b\nContent-Type: text/plain\n\nSee the report.\n\n--b\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mta.example.net\n\n{blocks}\n\n--b--\n",
    )


def test_first_failed_recipient_is_reported():
    raw = dsn(
        "Final-Recipient: rfc822; ok@example.net\nAction: delivered\nStatus: 2.0.0",
        "Final-Recipient: rfc822; late@example.net\nAction: delayed\nStatus: 4.4.1",
        "Final-Recipient: rfc822; gone@example.net\nAction: failed\nStatus: 5.1.1",
        "Final-Recipient: rfc822; other@example.net\nAction: failed\nStatus: 5.1.2",
    )
    fb = parse_feedback(raw)
    assert (fb.kind, fb.recipient, fb.status, fb.token) == (HARD, "gone@example.net", "5.1.1", "TOKEN_dsn")


def test_delayed_recipient_when_none_failed():
    raw = dsn("Final-Recipient: rfc822; ok@example.net\nAction: delivered\nStatus: 2.0.0",
              "Final-Recipient: rfc822; late@example.net\nAction: delayed\nStatus: 4.4.1")
    assert (parse_feedback(raw).kind, parse_feedback(raw).recipient) == (SOFT, "late@example.net")


def test_success_dsn_is_not_a_bounce():
    fb = parse_feedback(dsn("Final-Recipient: rfc822; ok@example.net\nAction: delivered\nStatus: 2.0.0"))
    assert (fb.kind, fb.status) == (FeedbackKind.UNKNOWN, "2.0.0")


def test_original_recipient_preferred_over_rewritten_final_recipient():
    raw = dsn(
        "Original-Recipient: rfc822;info@example.net\n"
        "Final-Recipient: rfc822; info-team@internal.example\nAction: failed\nStatus: 5.1.1"
    )
    assert parse_feedback(raw).recipient == "info@example.net"


@pytest.mark.parametrize(
    ("block", "kind", "status", "code"),
    [
        ("Action: failed\nStatus: 5.2.2\nDiagnostic-Code: smtp; 552 5.2.2 Mailbox full", SOFT, "5.2.2", 552),
        ("Action: failed\nStatus: 4.4.7\nDiagnostic-Code: X-Postfix; delivery time expired",
         SOFT, "4.4.7", None),
        ("Action: failed\nDiagnostic-Code: smtp; 550 Requested action not taken: no such user",
         HARD, None, 550),
        ("Action: failed", HARD, None, None),
        ("Action: failed\nStatus: 5.7.1\nDiagnostic-Code: smtp; 554 5.7.1 Service unavailable; client host "
         "blocked using zen.spamhaus.org", SOFT, "5.7.1", 554),
        ("Action: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 Mailbox quota exceeded",
         SOFT, "5.0.0", 550),
    ],
)
def test_dsn_status_classification(block, kind, status, code):
    fb = parse_feedback(dsn("Final-Recipient: rfc822; x@example.net\n" + block))
    assert (fb.kind, fb.status, fb.smtp_code) == (kind, status, code)


# --- ARF details --------------------------------------------------------------------------------------------


def arf(report: str, original: str) -> bytes:
    return simple(
        "From: scomp@aol.example\nTo: fbl@mail.example.com\nSubject: Email Feedback Report\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b"',
        "--b\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n"
        f"--b\nContent-Type: message/feedback-report\n\n{report.strip()}\n\n"
        f"--b\nContent-Type: message/rfc822\n\n{original.strip()}\n\nbody\n\n--b--\n",
    )


def test_arf_with_redacted_recipient_falls_back_to_original_headers():
    raw = arf(
        "Feedback-Type: abuse\nUser-Agent: AOL SComp\nVersion: 1\n"
        "Original-Mail-From: <bounces+TOKEN_aol-7@mail.example.com>",
        "From: news@mail.example.com\nTo: pat@aol.example\nMessage-ID: <m1@mail.example.com>\nSubject: Hi",
    )
    fb = parse_feedback(raw)
    assert (fb.kind, fb.token, fb.recipient, fb.message_id, fb.feedback_type) == (
        FeedbackKind.COMPLAINT, "TOKEN_aol-7", "pat@aol.example", "<m1@mail.example.com>", "abuse",
    )


def test_arf_rapport_id_is_used_before_original_mail_from():
    raw = arf(
        "Feedback-Type: fraud\nVersion: 1\nOriginal-Mail-From: <bounces+FROM_MAIL_FROM@mail.example.com>",
        "To: pat@aol.example\nX-Rapport-ID: FROM_RAPPORT_ID",
    )
    fb = parse_feedback(raw)
    assert (fb.kind, fb.token, fb.feedback_type) == (FeedbackKind.COMPLAINT, "FROM_RAPPORT_ID", "fraud")


@pytest.mark.parametrize("feedback_type", ["not-spam", "auth-failure"])
def test_arf_that_is_not_a_complaint(feedback_type):
    raw = arf(f"Feedback-Type: {feedback_type}\nVersion: 1", "To: pat@aol.example\nX-Rapport-ID: T1")
    fb = parse_feedback(raw)
    assert (fb.kind, fb.feedback_type, fb.token) == (FeedbackKind.UNKNOWN, feedback_type, "T1")


# --- text heuristics ----------------------------------------------------------------------------------------


def test_transcript_skips_successful_steps():
    raw = simple(
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>\n"
        "To: bounces+TOKEN_sm@mail.example.com\n"
        "Subject: Returned mail: see transcript for details",
        "The original message was received at Mon, 4 Mar 2024 10:12:00 GMT\n\n"
        "   ----- The following addresses had permanent fatal errors -----\n<amy@example.net>\n\n"
        "   ----- Transcript of session follows -----\n... while talking to mx.example.net.:\n"
        ">>> MAIL From:<bounces+TOKEN_sm@mail.example.com>\n<<< 250 2.1.0 Sender ok\n"
        ">>> RCPT To:<amy@example.net>\n<<< 550 5.1.1 <amy@example.net>... User unknown\n",
    )
    fb = parse_feedback(raw)
    assert (fb.kind, fb.status, fb.smtp_code, fb.recipient, fb.token) == (
        HARD, "5.1.1", 550, "amy@example.net", "TOKEN_sm",
    )


def test_text_bounce_without_code_uses_wording_not_the_quoted_original():
    raw = simple(
        "From: MAILER-DAEMON@mail.example.net\nTo: bounces+TOKEN_q@mail.example.com\nSubject: failure notice",
        "Hi. This is the qmail-send program at mail.example.net.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n<kim@example.net>:\n"
        "Connected to 198.51.100.1 but connection died.\n\n--- Below this line is a copy of the message.\n\n"
        "Subject: 4.2.2 things\n\nRelease 4.2.2 fixes 450 bugs.\n",
    )
    fb = parse_feedback(raw)
    assert (fb.kind, fb.status, fb.smtp_code, fb.recipient) == (HARD, None, None, "kim@example.net")


def test_text_delay_warning_is_soft():
    raw = simple(
        "From: Mail Delivery System <Mailer-Daemon@smtp.example.net>\nTo: bounces+TOKEN_d@mail.example.com\n"
        "Subject: Warning: message 1rhE5T-0004Qx-2m delayed 24 hours",
        "This message was created automatically by mail delivery software.\n"
        "A message that you sent has not yet been delivered to one or more of its\n"
        "recipients after more than 24 hours on the queue on smtp.example.net.\n\n  lou@example.net\n"
        "    host mx.example.net [198.51.100.7]: 451 4.3.0 Temporary lookup failure\n\n"
        "No action is required on your part. Delivery attempts will continue for some time.\n",
    )
    fb = parse_feedback(raw)
    assert (fb.kind, fb.status, fb.smtp_code, fb.recipient) == (SOFT, "4.3.0", 451, "lou@example.net")


def test_yahoo_style_text_bounce():
    raw = simple(
        "From: MAILER-DAEMON@yahoo.example\nTo: bounces+TOKEN_y@mail.example.com\nSubject: Failure Notice",
        "Sorry, we were unable to deliver your message to the following address.\n\n<kai@yahoo.example>:\n"
        "554: delivery error: dd This user doesn't have a yahoo.example account (kai@yahoo.example) [0]"
        " - mta1234.mail.ne1.yahoo.example\n\n--- Below this line is a copy of the message.\n\n"
        "X-Rapport-ID: TOKEN_y\n",
    )
    fb = parse_feedback(raw)
    assert (fb.kind, fb.status, fb.smtp_code, fb.recipient, fb.token) == (
        HARD, None, 554, "kai@yahoo.example", "TOKEN_y",
    )


def test_deep_nesting_still_reads_headers():
    raw = b"To: bounces+TOKEN_n@mail.example.com\nSubject: Undeliverable\n"
    raw += b"Content-Type: message/rfc822\n\n" * 5000
    with no_fallback():
        fb = parse_feedback(raw)
    assert (fb.token, fb.kind) == ("TOKEN_n", SOFT)


def test_returned_original_names_the_recipient_before_prose_guesses():
    raw = simple(
        "From: postmaster@contoso.example\nTo: news@mail.example.com\n"
        "Subject: Undeliverable: Your March digest\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"',
        "--b\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
        "For help write to helpdesk@contoso.example.\n\n"
        "--b\nContent-Type: message/rfc822\n\n"
        "To: Sam <sam@contoso.example>\nX-Rapport-ID: TOKEN_o\n\nHi\n\n--b--\n",
    )
    fb = parse_feedback(raw)
    assert (fb.kind, fb.recipient, fb.token) == (SOFT, "sam@contoso.example", "TOKEN_o")


def test_human_reply_is_unknown_but_keeps_the_token():
    raw = simple(
        "From: ann@example.org\nTo: bounces+TOKEN_h@mail.example.com\nSubject: Re: Your March digest\n"
        "In-Reply-To: <TOKEN_h@mail.example.com>",
        "Thanks, great issue!\n",
    )
    fb = parse_feedback(raw)
    assert (fb.kind, fb.token, fb.recipient) == (FeedbackKind.UNKNOWN, "TOKEN_h", None)
    assert fb.message_id == "<TOKEN_h@mail.example.com>"


# --- classify_smtp_reply and extract_token ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        (550, "5.1.1 <a@example.net>: Recipient address rejected: User unknown", HARD),
        (550, "Requested action not taken: mailbox unavailable", HARD),
        (553, "5.1.3 Bad recipient address syntax", HARD),
        (554, "5.4.4 Unable to route: no MX", HARD),
        (None, "550 5.1.1 user unknown", HARD),
        (None, "", FeedbackKind.UNKNOWN),
        (450, "4.2.0 Greylisted, please try again", SOFT),
        (421, "Service not available, closing transmission channel", SOFT),
        (451, "", SOFT),
        (452, "4.2.2 The email account that you tried to reach is over quota", SOFT),
        (552, "5.2.2 Mailbox full", SOFT),
        (552, "Requested mail action aborted: exceeded storage allocation", SOFT),
        (552, "5.3.4 Message size exceeds fixed limit", SOFT),
        (550, "5.2.2 The email account that you tried to reach is over quota", SOFT),
        (550, "5.7.1 Message rejected due to content restrictions", SOFT),
        (550, "5.7.26 Unauthenticated email from example.com is not accepted due to DMARC policy", SOFT),
        (554, "Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org", SOFT),
        (550, "5.7.1 <a@example.net>: Recipient address rejected: user unknown", HARD),
        # The enhanced status is more specific than the basic code.
        (550, "4.2.2 mailbox temporarily full", SOFT),
        (250, "2.0.0 OK queued as 4Tq2Lx1Zb3z9sQ", FeedbackKind.UNKNOWN),
        (354, "End data with <CR><LF>.<CR><LF>", FeedbackKind.UNKNOWN),
        (999, "garbage", FeedbackKind.UNKNOWN),
    ],
)
def test_classify_smtp_reply(code, text, kind):
    assert classify_smtp_reply(code, text) is kind


def test_classify_smtp_reply_tolerates_bad_text():
    assert classify_smtp_reply(550, None) is HARD  # type: ignore[arg-type]
    assert classify_smtp_reply(None, "x" * 5_000_000) is FeedbackKind.UNKNOWN


@pytest.mark.parametrize(
    ("address", "prefix", "token"),
    [
        ("bounces+AQAAAAEAAAAC3q2-7w@mail.example.com", "bounces", "AQAAAAEAAAAC3q2-7w"),
        ("Bounces+AbC_-9@mail.example.com", "bounces", "AbC_-9"),
        ("<bounces+tok@mail.example.com>", "bounces", "tok"),
        ("Rapport <bounces+tok@mail.example.com>", "bounces", "tok"),
        ("  bounces+tok@mail.example.com.  ", "bounces", "tok"),
        ("unsubscribe+tok@mail.example.com", "unsubscribe", "tok"),
        ("unsubscribe+tok@mail.example.com", "bounces", None),
        ("bounces@mail.example.com", "bounces", None),
        ("bounces+@mail.example.com", "bounces", None),
        ("bounces+tok", "bounces", None),
        ("bounces+tok@", "bounces", None),
        ("bounces+to.k@mail.example.com", "bounces", None),
        ("bounces+to+k@mail.example.com", "bounces", None),
        ("xbounces+tok@mail.example.com", "bounces", None),
        ("bounces+tok@mail example.com", "bounces", None),
        ("bounces+" + "a" * 257 + "@mail.example.com", "bounces", None),
        ("", "bounces", None),
        ("bounces+tok@mail.example.com", "", None),
    ],
)
def test_extract_token(address, prefix, token):
    assert extract_token(address, prefix) == token


def test_extract_token_rejects_non_strings():
    assert extract_token(None, "bounces") is None  # type: ignore[arg-type]
    assert extract_token(b"bounces+t@x.example", "bounces") is None  # type: ignore[arg-type]


# --- hostile input ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def watchdog(seconds: int = 60):
    """Fail a parse that hangs (a stalled worker), without asserting how fast it is."""

    def hung(_signum, _frame):
        raise AssertionError(f"parse_feedback still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_huge_attachment_does_not_stall():
    base = load("postfix_5_1_1.eml")
    closing = b"--4Tq2Lx1Zb3z9sQ.1709547127/mta1.mail.example.com--\n"
    attachment = (
        b"--4Tq2Lx1Zb3z9sQ.1709547127/mta1.mail.example.com\nContent-Type: application/octet-stream\n"
        b"Content-Transfer-Encoding: base64\n\n" + (b"QUJD" * 19 + b"\n") * 660_000
    )
    raw = base.replace(closing, attachment + closing)
    assert len(raw) > 50_000_000
    with watchdog():
        fb = parse_feedback(raw)
    assert (fb.kind, fb.token, fb.status) == (HARD, "AQAAAAEAAAAC3q2-7w", "5.1.1")


DS_HEAD = (
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
    b"--b\nContent-Type: message/delivery-status\n\n"
)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 1000,
        b"<" * 1_000_000,
        b"a" * 2_000_000,
        b"Subject: Undeliverable\n\n" + b"a" * 300_000 + b"@" + b"b." * 200_000,
        b"From: MAILER-DAEMON@x\n\n" + b"5.5.5." * 200_000,
        b"From: MAILER-DAEMON@x\n\n" + b"<" * 100_000 + b"@" + b">" * 100_000,
        b"Content-Type: text/html\nSubject: Undeliverable\n\n" + b"<a" * 500_000,
        b"Content-Type: multipart/report; boundary=b\n\n"
        + b"--b\nContent-Type: multipart/mixed; boundary=b\n\n" * 20_000,
        b"Content-Type: message/rfc822\n\n" * 20_000,
        # Each blank line in a delivery-status part, and each boundary, is an object in the stdlib parser.
        DS_HEAD + b"\n" * 1_000_000,
        DS_HEAD + b"\r" * 1_000_000,
        DS_HEAD + b"a\n\n" * 300_000,
        b"Content-Type: multipart/mixed; boundary=b\n\n" + b"--b\r\r" * 200_000,
        b"Content-Type: text/plain; charset=idna\n\n\xff\xfe",
        b"Content-Type: text/plain; charset=\"rot13\"\nContent-Transfer-Encoding: base64\n\n!!!!",
        b"Subject: =?utf-8?q?=ff=fe?= =?x-unknown?b?AAAA?=\nFrom: =?utf-8?b?invalid\n\nbody",
    ],
)
def test_pathological_inputs(raw):
    with no_fallback(), watchdog():
        fb = parse_feedback(raw)
    assert_bounded(fb)


@pytest.mark.parametrize("raw", [None, "From: MAILER-DAEMON@x\n\nstring input", 12345, bytearray(b"x")])
def test_non_bytes_input_does_not_raise(raw):
    assert_bounded(parse_feedback(raw))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=4096), envelope=st.none() | st.text(max_size=300))
def test_arbitrary_bytes_never_raise(raw, envelope):
    with no_fallback():
        assert_bounded(parse_feedback(raw, envelope))


INTERESTING = [
    b"\n", b"\r\n", b"\n\n", b"--", b":", b";", b"<", b">", b"@", b"+", b"=?utf-8?b?", b"=?", b"\xff\xfe",
    b"\x00", b"Content-Type: message/delivery-status\n", b"Content-Type: message/rfc822\n",
    b"Content-Type: message/feedback-report\n", b"Content-Transfer-Encoding: base64\n", b"boundary=",
    b"Status: 5.", b"Action: failed\n", b"Final-Recipient: rfc822;", b"charset=utf-16", b"bounces+",
    b"X-Rapport-ID: ", b"report-type=feedback-report", b" " * 100,
]


@st.composite
def mutated_dsn(draw):
    name = draw(st.sampled_from(["postfix_5_1_1.eml", "gmail_dsn_failure.eml", "arf_yahoo_complaint.eml"]))
    data = bytearray(load(name))
    for _ in range(draw(st.integers(min_value=1, max_value=12))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate", "interesting"]))
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(min_value=1, max_value=256))]
        elif op == "truncate":
            del data[pos:]
        elif op == "duplicate":
            length = draw(st.integers(min_value=1, max_value=512))
            data[pos:pos] = data[pos:pos + length] * draw(st.integers(min_value=1, max_value=50))
        else:
            data[pos:pos] = draw(st.sampled_from(INTERESTING))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated_dsn())
def test_mutated_reports_never_raise(raw):
    with no_fallback():
        assert_bounded(parse_feedback(raw))


@settings(max_examples=200, deadline=None)
@given(code=st.none() | st.integers(min_value=-1000, max_value=10_000), text=st.text(max_size=2000))
def test_classify_smtp_reply_never_raises(code, text):
    assert isinstance(classify_smtp_reply(code, text), FeedbackKind)


@settings(max_examples=200, deadline=None)
@given(
    address=st.text(max_size=400), prefix=st.sampled_from(["bounces", "unsubscribe", "BOUNCES", "a+b", ""])
)
def test_extract_token_never_raises(address, prefix):
    token = extract_token(address, prefix)
    assert token is None or (token in address and 1 <= len(token) <= 256)
