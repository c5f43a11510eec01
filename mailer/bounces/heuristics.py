"""Everything that is not a standard report: non-standard bounces (Exim, qmail, Exchange, ...) recognised by sender,
subject and body phrases with their codes read from the text, and auto-replies by RFC 3834 headers and subjects.
"""

from __future__ import annotations

import re
from email.message import Message

from mailer.bounces.classify import (
    LEADING_CODE_RE,
    MAILBOX_FULL_RE,
    STATUS_RE,
    USER_UNKNOWN_RE,
    classify_codes,
    find_status,
    first_failure,
    normalise_status,
)
from mailer.bounces.fields import (
    ADDR_RE,
    clean_address,
    first_address_in,
    line_at,
    squash,
    strip_address_type,
    text_around,
)
from mailer.bounces.findings import Findings
from mailer.bounces.mime import first_address, first_header, header_addresses, header_values, parse_fields
from mailer.bounces.vocabulary import BOUNCE_PREFIX, UNSUBSCRIBE_PREFIX, FeedbackKind

# "550 5.1.1", "550-5.1.1" (multi-line replies), "550 #5.1.1".
_CODE_STATUS_RE = re.compile(r"(?<![\d.])([245]\d\d)(?:-|[ \t]{1,4})#?([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")

# A bare reply code in prose only counts where MTAs put one, never any three-digit number.
_TEXT_CODE_RE = re.compile(r"(?im)(?:^|said:|smtp;|returned '|error:)[ \t]{0,4}([245]\d\d)(?![\d.])")

# qmail and Postfix start each failed recipient on a line of its own: "<user@example.net>:".
_ANGLE_RECIPIENT_RE = re.compile(r"(?m)^[ \t]{0,16}<([^<>\s@]{1,64}@[^<>\s@]{1,255})>:")
_PERMANENT_RE = re.compile(
    r"permanent(?:ly)? (?:error|fail)|failed permanently|i've given up|giving up|fatal error", re.I
)
_DELAY_SUBJECT_RE = re.compile(r"\bdelay(?:ed)?\b|still being retried|not yet delivered", re.I)
_DELAY_BODY_RE = re.compile(
    r"not yet been delivered|has been delayed|will (?:continue to |keep )?(?:re)?try|warning only"
    r"|delivery attempts will continue|still (?:be )?(?:re)?trying",
    re.I,
)
BOUNCE_SUBJECT_RE = re.compile(
    r"undeliver|returned mail|returned to sender|delivery (?:status notification|failure|failed|has failed"
    r"|problem|notification|report)|mail delivery (?:failed|failure|system|subsystem)|failure notice"
    r"|non[- ]?delivery|could not be delivered|not delivered|delayed mail|delivery delayed|mail system error",
    re.I,
)
BOUNCE_BODY_RE = re.compile(
    r"this is the mail system at host|qmail-send program|created automatically by mail delivery software"
    r"|delivery has failed to these recipients|did not reach some or all of the intended recipients"
    r"|(?:couldn't|could not|can't|cannot|wasn't|was not) (?:be )?delivered|wasn't able to deliver"
    r"|unable to deliver|delivery to the following recipients? (?:failed|has been delayed)|undeliverable"
    r"|following (?:address(?:es|\(es\))?|recipients?|recipient\(s\))"
    r" (?:failed|had permanent|cannot be reached)",
    re.I,
)
_DAEMON_LOCALPARTS = frozenset({"mailer-daemon", "mailer_daemon", "mail-daemon", "maildaemon", "postmaster"})
_DAEMON_NAME_RE = re.compile(r"mail delivery (?:system|subsystem)|mailer.daemon|postmaster", re.I)
_OOO_SUBJECT_RE = re.compile(
    r"auto(?:matic)?[ -]?(?:reply|response|answer)|autoreply|out of (?:the )?office|\booo\b|away from"
    r"|on vacation|\bvacation\b|abwesen|automatische antwort|r[ée]ponse automatique|\babsence\b"
    r"|respuesta autom[aá]tica|risposta automatica|autosvar|automatisch antwoord|afwezig",
    re.I,
)
_AUTO_REPLY_HEADERS = (
    "x-autoreply", "x-autorespond", "x-autoresponder", "x-autoreply-from", "x-mail-autoreply",
)


def analyse_text_bounce(
    msg: Message,
    subject: str,
    head: str,
    failed_header: str | None,
    original: Message | None,
    found: Findings,
) -> FeedbackKind:
    """Non-standard bounce: read recipient and codes from the notice text, before any quoted original."""
    # Some MTAs print DSN-style fields inline in the text.
    inline: dict[str, str] = {}
    for block in parse_fields(head):
        for name in ("original-recipient", "final-recipient", "status", "diagnostic-code"):
            if name in block:
                inline.setdefault(name, block[name])
    excluded = {a.lower() for a in header_addresses(msg, ("from", "to", "sender", "reply-to"))}
    angle = _ANGLE_RECIPIENT_RE.search(head)
    found.offer(
        recipient=first_address_in(failed_header or "")
        or clean_address(inline.get("original-recipient"))
        or clean_address(inline.get("final-recipient"))
        or (clean_address(angle.group(1)) if angle else None)
        # Rapport sends one recipient per message, so a returned original's To beats guessing from prose.
        or (first_address(original, ("to",)) if original is not None else None)
        or _first_recipient_candidate(head, excluded)
    )
    inline_diagnostic = strip_address_type(inline.get("diagnostic-code", ""))
    leading = LEADING_CODE_RE.match(inline_diagnostic)
    status = find_status(inline.get("status", "")) or find_status(inline_diagnostic)
    code = int(leading.group(1)) if leading else None
    anchor = first_failure(_CODE_STATUS_RE, head)
    if anchor is not None:
        code = code or int(anchor.group(1))
        status = status or normalise_status(anchor.group(2), anchor.group(3), anchor.group(4))
    else:
        alone = first_failure(STATUS_RE, head)
        bare = first_failure(_TEXT_CODE_RE, head)
        if alone is not None:
            status = status or normalise_status(alone.group(1), alone.group(2), alone.group(3))
        if bare is not None:
            code = code or int(bare.group(1))
        anchor = alone or bare
    # Judge by the words around the code, not the whole notice with its boilerplate.
    context = text_around(head, anchor.start(), anchor.end()) if anchor else head
    diagnostic = squash(inline_diagnostic) or line_at(head, anchor)
    found.offer(status=status, smtp_code=code, diagnostic=diagnostic)

    delayed = bool(_DELAY_SUBJECT_RE.search(subject) or _DELAY_BODY_RE.search(head))
    if delayed and (status is None or status[0] != "5") and (code is None or code < 500):
        return FeedbackKind.SOFT_BOUNCE
    if status or code:
        kind = classify_codes(code, status, context)
        if kind is not FeedbackKind.UNKNOWN:
            return kind
    if USER_UNKNOWN_RE.search(head):
        return FeedbackKind.HARD_BOUNCE
    if MAILBOX_FULL_RE.search(head):
        return FeedbackKind.SOFT_BOUNCE
    if _PERMANENT_RE.search(head):
        return FeedbackKind.HARD_BOUNCE
    # A bounce with no evidence either way: count it, so repeats still lead to suppression, but never suppress
    # a contact on a notice we could not read.
    return FeedbackKind.SOFT_BOUNCE


def _first_recipient_candidate(text: str, excluded: set[str]) -> str | None:
    """First address in a notice that is neither ours, the reporting daemon's, nor a header party's."""
    for count, match in enumerate(ADDR_RE.finditer(text)):
        if count >= 50:
            break
        address = match.group(1).rstrip(".")
        local = address.partition("@")[0].lower()
        if address.lower() in excluded or local in _DAEMON_LOCALPARTS:
            continue
        if local.startswith((BOUNCE_PREFIX + "+", UNSUBSCRIBE_PREFIX + "+")):
            continue
        return clean_address(address)
    return None


def is_daemon(address: str | None, display: str) -> bool:
    local = (address or "").partition("@")[0].lower()
    return local in _DAEMON_LOCALPARTS or bool(_DAEMON_NAME_RE.search(display))


def strong_auto_reply(msg: Message, subject: str) -> bool:
    """RFC 3834 responders and the common vendor headers, or an out-of-office subject line."""
    if header_values(msg, _AUTO_REPLY_HEADERS):
        return True
    precedence = (first_header(msg, "precedence") or "").strip().lower()
    return precedence == "auto_reply" or bool(_OOO_SUBJECT_RE.search(subject))


def auto_submitted(msg: Message) -> bool:
    value = (first_header(msg, "auto-submitted") or "").strip().lower()
    return bool(value) and not value.startswith("no")
