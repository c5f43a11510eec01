"""Classify mail that comes back to Rapport: bounces, spam complaints, mailto unsubscribes and auto-replies.

Input is whatever reaches the bounce/abuse/unsubscribe mailbox or an MTA pipe. Three shapes are understood:

* RFC 3464 delivery status notifications (``multipart/report; report-type=delivery-status``), read field by
  field from the ``message/delivery-status`` part;
* RFC 5965 ARF feedback reports (``report-type=feedback-report``) from ISP feedback loops;
* everything else by heuristics: non-standard bounces (Exim, qmail, Exchange, ...) are recognised by sender,
  subject and body phrases, their status codes are read from the text; auto-replies by RFC 3834 headers and
  subjects; mail to an ``unsubscribe+TOKEN@`` address is an unsubscribe request.

The send is found again through its token, taken from the VERP envelope recipient, the report's delivery
headers, or the ``X-Rapport-ID`` header of the returned original. Only the head of a message is parsed
(:data:`MAX_PARSE_BYTES`) and only :data:`MAX_TEXT_BYTES` of text is inspected, so a huge attachment costs
nothing.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, Parser
from email.policy import compat32
from email.utils import collapse_rfc2231_value, getaddresses
from enum import StrEnum

logger = logging.getLogger(__name__)

__all__ = [
    "BOUNCE_PREFIX",
    "UNSUBSCRIBE_PREFIX",
    "Feedback",
    "FeedbackKind",
    "classify_smtp_reply",
    "extract_token",
    "parse_feedback",
]

BOUNCE_PREFIX = "bounces"
UNSUBSCRIBE_PREFIX = "unsubscribe"

# Reports put their machine-readable parts (and the original's headers) in the first few KiB; past this
# there is only attachment bulk. The stdlib parser spends microseconds per MIME object, so the cap is low
# enough that crafted input made of tiny parts still parses in a fraction of a second.
MAX_PARSE_BYTES = 256 * 1024
# Each boundary line, and each blank line inside a delivery-status part, costs the parser an object. Real
# reports have a handful of boundaries and a few dozen blank lines before the parts that matter.
MAX_STRUCTURE_LINES = 2000
# Decoded text inspected per message (all human-readable parts together) and per report part.
MAX_TEXT_BYTES = 256 * 1024
MAX_PARTS = 64
MAX_DEPTH = 8
MAX_DIAGNOSTIC = 500
# Generous next to mailer.tracking's 120-char tokens: the app validates tokens, this module only finds them.
_MAX_TOKEN = 256
_MAX_ADDRESS = 320
_MAX_MESSAGE_ID = 998
_MAX_FEEDBACK_TYPE = 64


class FeedbackKind(StrEnum):
    """What an inbound message means for the contact it concerns."""

    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    AUTO_REPLY = "auto_reply"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Feedback:
    """One classified inbound message and everything recovered to match it to a send and a contact."""

    kind: FeedbackKind
    token: str | None
    recipient: str | None
    status: str | None
    smtp_code: int | None
    diagnostic: str | None
    message_id: str | None
    feedback_type: str | None = None


# --- patterns -----------------------------------------------------------------------------------------------
# Every quantifier below is bounded or stops at a delimiter, so a search over hostile text stays linear.

_TOKEN_PATTERN = rf"[A-Za-z0-9_-]{{1,{_MAX_TOKEN}}}"
_TOKEN_RE = re.compile(_TOKEN_PATTERN)
_DOMAIN_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?\.?")
_PREFIX_SCAN = {
    prefix: re.compile(
        r"(?<![A-Za-z0-9._%+-])(?i:" + re.escape(prefix) + r")\+(" + _TOKEN_PATTERN + r")@[A-Za-z0-9]"
    )
    for prefix in (BOUNCE_PREFIX, UNSUBSCRIBE_PREFIX)
}
# Enhanced status (RFC 3463). The look-arounds keep IP addresses and versions ("10.4.2.2", "5.1.1.3") out.
_STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
# "550 5.1.1", "550-5.1.1" (multi-line replies), "550 #5.1.1".
_CODE_STATUS_RE = re.compile(r"(?<![\d.])([245]\d\d)(?:-|[ \t]{1,4})#?([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_LEADING_CODE_RE = re.compile(r"\s{0,16}([245]\d\d)(?![\d.])")
# A bare reply code in prose only counts where MTAs put one, never any three-digit number.
_TEXT_CODE_RE = re.compile(r"(?im)(?:^|said:|smtp;|returned '|error:)[ \t]{0,4}([245]\d\d)(?![\d.])")
_ADDRESS_TYPE_RE = re.compile(r"[ \t]{0,16}[A-Za-z0-9-]{1,32}[ \t]{0,16};")
_MSGID_RE = re.compile(rf"<([^<>\s]{{1,{_MAX_MESSAGE_ID - 2}}})>")
_FIELD_NAME_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
_ADDR_RE = re.compile(
    r"(?<![A-Za-z0-9._%+'-])([A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8})"
)
# qmail and Postfix start each failed recipient on a line of its own: "<user@example.net>:".
_ANGLE_RECIPIENT_RE = re.compile(r"(?m)^[ \t]{0,16}<([^<>\s@]{1,64}@[^<>\s@]{1,255})>:")
_TEXT_RAPPORT_ID_RE = re.compile(
    r"(?im)^[ \t>]{0,16}X-Rapport-ID:[ \t]{0,16}(" + _TOKEN_PATTERN + r")[ \t]*$"
)
_TEXT_MESSAGE_ID_RE = re.compile(r"(?im)^[ \t>]{0,16}Message-ID:[ \t]{0,16}(<[^<>\s]{1,996}>)")
_HTML_TAG_RE = re.compile(r"<[^<>]*>")
_BLANK_RUN_RE = re.compile(rb"\n{3,}")
_STRUCTURE_LINE_RE = re.compile(rb"\n(?:\n|--)")
# Where a text bounce starts quoting the returned message; codes and addresses after it are the newsletter's.
_ORIGINAL_MARKER_RE = re.compile(
    r"(?im)^[ \t]{0,16}(?:-{2,20}[ \t]*[^\n]{0,40}?(?:copy of the message|original message"
    r"|(?:message|mail) follows|headers follow|returned message|unsent message)"
    r"|original message headers:?[ \t]*$)"
)

# The address itself is bad; decisive even under a 5.7.x code some servers misuse for unknown users.
_USER_UNKNOWN_RE = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient|address|account)|n[o']t exist"
    r"|address (?:not found|unknown)|recipient (?:not found|unknown)|unknown (?:recipient|address|mailbox)"
    r"|invalid (?:recipient|mailbox|address)|mailbox (?:unavailable|not found)|account (?:has been )?disabled"
    r"|(?:account|mailbox) is disabled|no mailbox here|not a valid (?:mailbox|recipient|user)"
    r"|addressee unknown"
    r"|recip(?:ient)?notfound|address couldn't be found|doesn't have an? [\w.-]{1,40} account",
    re.I,
)
_MAILBOX_FULL_RE = re.compile(
    r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|full)|exceeded (?:storage|(?:the )?quota)"
    r"|insufficient (?:system )?storage|mailbox size limit",
    re.I,
)
# Rejections about Rapport's reputation or authentication, not about whether the address exists.
_POLICY_RE = re.compile(
    r"spamhaus|block ?list|black ?list|blocked|listed (?:at|in|on)|reputation|rate.?limit|too many|spam|dmarc"
    r"|unauthenticated|policy",
    re.I,
)
_PERMANENT_RE = re.compile(
    r"permanent(?:ly)? (?:error|fail)|failed permanently|i've given up|giving up|fatal error", re.I
)
_DELAY_SUBJECT_RE = re.compile(r"\bdelay(?:ed)?\b|still being retried|not yet delivered", re.I)
_DELAY_BODY_RE = re.compile(
    r"not yet been delivered|has been delayed|will (?:continue to |keep )?(?:re)?try|warning only"
    r"|delivery attempts will continue|still (?:be )?(?:re)?trying",
    re.I,
)
_BOUNCE_SUBJECT_RE = re.compile(
    r"undeliver|returned mail|returned to sender|delivery (?:status notification|failure|failed|has failed"
    r"|problem|notification|report)|mail delivery (?:failed|failure|system|subsystem)|failure notice"
    r"|non[- ]?delivery|could not be delivered|not delivered|delayed mail|delivery delayed|mail system error",
    re.I,
)
_BOUNCE_BODY_RE = re.compile(
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
# Local-delivery stamps naming the mailbox the report reached (Envelope-To is Exim's, X-Envelope-To others').
_DELIVERY_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")

_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_FEEDBACK_TYPES = frozenset({"message/feedback-report"})
_MDN_TYPES = frozenset({"message/disposition-notification", "message/global-disposition-notification"})
_ORIGINAL_TYPES = frozenset({
    "message/rfc822", "message/global", "message/rfc822-headers", "message/global-headers",
    "text/rfc822-headers",
})
# Statuses in class 5 that say nothing bad about the address: the mailbox is full (RFC 3463 X.2.2; many
# providers send it as permanent although it clears once the owner cleans up) or this message was too big
# (X.2.3, X.3.4). Counting them as soft lets repeated failures suppress without losing a contact to one.
_SOFT_5XX_STATUSES = frozenset({"5.2.2", "5.2.3", "5.3.4"})
# ARF types that are not a complaint by the recipient: "not-spam" is the opposite, "auth-failure" (RFC 6591)
# reports our DKIM/SPF results.
_NOT_COMPLAINT_TYPES = frozenset({"not-spam", "auth-failure"})


# --- public API ---------------------------------------------------------------------------------------------


def extract_token(address: str, prefix: str) -> str | None:
    """'bounces+TOKEN@domain' -> 'TOKEN' (prefix='bounces'); None if it doesn't match; prefix ignores case."""
    if not isinstance(address, str) or not isinstance(prefix, str) or not prefix or len(address) > 1024:
        return None
    text = address.strip()
    bracketed = re.search(r"<([^<>]*)>", text)
    if bracketed:
        text = bracketed.group(1).strip()
    local, at, domain = text.rpartition("@")
    if not at or not _DOMAIN_RE.fullmatch(domain):
        return None
    head, plus, token = local.partition("+")
    # The token is opaque base64url and case-sensitive, so only the prefix is compared case-insensitively.
    if not plus or head.casefold() != prefix.casefold() or not _TOKEN_RE.fullmatch(token):
        return None
    return token


def classify_smtp_reply(code: int | None, text: str) -> FeedbackKind:
    """SMTP reply at send time -> HARD_BOUNCE for 5xx (or 5.x.x), SOFT_BOUNCE for 4xx; UNKNOWN otherwise.

    The enhanced status, when the text carries one, decides over the basic code because it is more specific.
    Class-5 replies that are soft all the same: mailbox full or message too large (5.2.2, 5.2.3, 5.3.4, a bare
    552, or "over quota" wording), and security/policy rejections (5.7.x, or blocklist/spam/DMARC wording with
    no more specific status), which judge Rapport's reputation rather than the address. Wording that the user
    does not exist makes any 5xx hard.
    """
    text = text if isinstance(text, str) else ""
    text = text[:MAX_TEXT_BYTES]
    if not isinstance(code, int) or isinstance(code, bool) or not 200 <= code <= 599:
        leading = _LEADING_CODE_RE.match(text)
        code = int(leading.group(1)) if leading else None
    return _classify(code, _find_status(text), text)


def parse_feedback(raw: bytes, envelope_recipient: str | None = None) -> Feedback:
    """Classify one inbound message. Never raises on garbage: returns kind UNKNOWN, with whatever it found."""
    found = _Findings()
    try:
        found.kind = _analyse(raw, envelope_recipient, found)
    except Exception:
        # Unreachable for well-formed mail; a stdlib parser quirk or our own bug must not kill the worker, and
        # a partial classification is worse than none, so the kind falls back to UNKNOWN.
        logger.warning("feedback message could not be analysed; classified as unknown", exc_info=True)
        found.kind = FeedbackKind.UNKNOWN
    feedback = found.freeze()
    logger.debug("classified inbound message as %s (token=%s)", feedback.kind, feedback.token)
    return feedback


# --- accumulation -------------------------------------------------------------------------------------------


class _Findings:
    """Mutable scratchpad: the first source to offer a field wins, matching the documented priority order."""

    def __init__(self) -> None:
        self.kind = FeedbackKind.UNKNOWN
        self.token: str | None = None
        self.recipient: str | None = None
        self.status: str | None = None
        self.smtp_code: int | None = None
        self.diagnostic: str | None = None
        self.message_id: str | None = None
        self.feedback_type: str | None = None

    def offer(self, **values: object) -> None:
        """Set each field that is still empty to its offered value, if that value is not None."""
        for name, value in values.items():
            if value is not None and getattr(self, name) is None:
                setattr(self, name, value)

    def freeze(self) -> Feedback:
        """Bound every field again so no input, however odd, yields an oversized result."""
        token = self.token if isinstance(self.token, str) and _TOKEN_RE.fullmatch(self.token) else None
        code = self.smtp_code if isinstance(self.smtp_code, int) and 200 <= self.smtp_code <= 599 else None
        values = {
            "kind": self.kind,
            "token": token,
            "recipient": _bounded(self.recipient, _MAX_ADDRESS),
            "status": _bounded(self.status, 11),
            "smtp_code": code,
            "diagnostic": _bounded(self.diagnostic, MAX_DIAGNOSTIC),
            "message_id": _bounded(self.message_id, _MAX_MESSAGE_ID),
            "feedback_type": _bounded(self.feedback_type, _MAX_FEEDBACK_TYPE),
        }
        return Feedback(**values)


@dataclass
class _Parts:
    """The parts of a message that matter, found in one bounded walk."""

    status: Message | None = None
    feedback: Message | None = None
    mdn: bool = False
    original: Message | None = None
    notice: str = ""


# --- analysis -----------------------------------------------------------------------------------------------


def _analyse(raw: object, envelope_recipient: object, found: _Findings) -> FeedbackKind:
    """Fill found and return the kind; the order of the checks is the precedence between interpretations."""
    data = _as_bytes(raw)
    if data is None:
        return FeedbackKind.UNKNOWN
    data = _parse_budget(data)
    try:
        msg = BytesParser(policy=compat32).parsebytes(data)
    except RecursionError:
        # The stdlib parser recurses once per nesting level; a thousand nested parts is an attack or junk,
        # and the headers alone can still carry the token and classification hints.
        logger.info("inbound message nests too deeply; classifying from its headers only")
        msg = BytesParser(policy=compat32).parsebytes(data, headersonly=True)

    envelope = envelope_recipient if isinstance(envelope_recipient, str) else None
    env_bounce = extract_token(envelope, BOUNCE_PREFIX) if envelope else None
    env_unsub = extract_token(envelope, UNSUBSCRIBE_PREFIX) if envelope else None
    delivered_to = " ".join(_header_values(msg, _DELIVERY_HEADERS))[:MAX_TEXT_BYTES]
    hdr_bounce = _scan_token(delivered_to, BOUNCE_PREFIX)
    hdr_unsub = _scan_token(delivered_to, UNSUBSCRIBE_PREFIX)
    found.offer(token=env_bounce or env_unsub or hdr_bounce or hdr_unsub)
    # The envelope is authoritative when it names one of our addresses; headers only speak when it does not.
    unsubscribe_token = env_unsub if (env_bounce or env_unsub) else hdr_unsub

    parts = _collect_parts(msg)
    original = parts.original
    if original is not None:
        found.offer(
            token=_valid_token(_first_header(original, "x-rapport-id")),
            message_id=_clean_message_id(_first_header(original, "message-id")),
        )
    subject = _clean_text(_first_header(msg, "subject") or "")
    report_type = _param(msg, "report-type")

    kind: FeedbackKind | None = None
    if parts.feedback is not None or report_type == "feedback-report":
        kind = _analyse_arf(parts, found)
    elif parts.status is not None:
        kind = _analyse_dsn(parts.status, found)
    if kind is None and (parts.mdn or report_type == "disposition-notification"):
        # Read receipts are generated automatically and say nothing about deliverability.
        kind = FeedbackKind.AUTO_REPLY
    if kind is None and unsubscribe_token:
        found.token = unsubscribe_token
        found.offer(recipient=_first_address(msg, ("from",)))
        kind = FeedbackKind.UNSUBSCRIBE

    notice = parts.notice
    head = _before_original(notice)
    if kind is None:
        sender = _first_address(msg, ("from",))
        from_daemon = _is_daemon(sender, _first_header(msg, "from") or "")
        failed_header = _first_header(msg, "x-failed-recipients")
        if not from_daemon and not failed_header and _strong_auto_reply(msg, subject):
            kind = FeedbackKind.AUTO_REPLY
            found.offer(recipient=sender)
        elif (from_daemon or failed_header or _BOUNCE_SUBJECT_RE.search(subject)
              or _BOUNCE_BODY_RE.search(head)):
            kind = _analyse_text_bounce(msg, subject, head, failed_header, original, found)
        elif _auto_submitted(msg):
            # Bounces carry Auto-Submitted too, so this weak signal only counts after the bounce checks.
            kind = FeedbackKind.AUTO_REPLY
            found.offer(recipient=sender)

    if original is not None and kind in (FeedbackKind.HARD_BOUNCE, FeedbackKind.SOFT_BOUNCE):
        # Rapport sends one recipient per message, so the returned original's To names the failed address.
        found.offer(recipient=_first_address(original, ("to",)))

    # Last-resort ways back to the send, whatever the kind.
    if original is not None:
        found.offer(token=_scan_token(" ".join(_header_values(original, ("return-path",))), BOUNCE_PREFIX))
    text_id = _TEXT_RAPPORT_ID_RE.search(notice)
    found.offer(token=text_id.group(1) if text_id else None)
    found.offer(token=_scan_token(notice, BOUNCE_PREFIX))
    text_msgid = _TEXT_MESSAGE_ID_RE.search(notice)
    found.offer(message_id=text_msgid.group(1) if text_msgid else None)
    # Replies and many NDRs point at the message they answer.
    found.offer(message_id=_clean_message_id(_first_header(msg, "in-reply-to")))
    references = _MSGID_RE.findall(_first_header(msg, "references") or "")
    found.offer(message_id=_clean_message_id(f"<{references[-1]}>") if references else None)
    if subject and kind in (None, FeedbackKind.AUTO_REPLY, FeedbackKind.UNSUBSCRIBE):
        found.offer(diagnostic=_squash(subject))
    return kind or FeedbackKind.UNKNOWN


def _analyse_dsn(status_part: Message, found: _Findings) -> FeedbackKind | None:
    """RFC 3464: report the first failed (else delayed) recipient; None if no block names a recipient."""
    blocks = _parse_fields(_report_text(status_part))
    recipients = [b for b in blocks if "final-recipient" in b or "original-recipient" in b or "action" in b]
    if not recipients:
        return None
    per_message = blocks[0] if blocks[0] is not recipients[0] else {}

    def action_of(block: dict[str, str]) -> str:
        words = block.get("action", "").lower().split()
        return words[0] if words else ""

    chosen = next(
        (b for b in recipients if action_of(b) == "failed"),
        next((b for b in recipients if action_of(b) == "delayed"), recipients[0]),
    )
    action = action_of(chosen)
    diagnostic = _strip_address_type(chosen.get("diagnostic-code", ""))
    leading = _LEADING_CODE_RE.match(diagnostic)
    code = int(leading.group(1)) if leading else None
    status = _find_status(chosen.get("status", "")) or _find_status(diagnostic)
    # Original-Recipient is the address Rapport gave in RCPT TO; Final-Recipient may be a post-alias mailbox.
    found.offer(
        recipient=(
            _clean_address(chosen.get("original-recipient")) or _clean_address(chosen.get("final-recipient"))
        ),
        status=status,
        smtp_code=code,
        diagnostic=_squash(diagnostic) or None,
        message_id=_clean_message_id(per_message.get("x-original-message-id")),
        # Postfix names the original envelope sender (our VERP address) in X-Postfix-Sender.
        token=_scan_token(" ".join(per_message.values()), BOUNCE_PREFIX),
    )
    if action == "delayed":
        return FeedbackKind.SOFT_BOUNCE
    if action in ("delivered", "relayed", "expanded"):
        return FeedbackKind.UNKNOWN
    kind = _classify(code, status, diagnostic)
    if kind is FeedbackKind.UNKNOWN and action == "failed":
        # "failed" means the MTA gave up for good (RFC 3464 2.3.3), even when it gave no code.
        return FeedbackKind.HARD_BOUNCE
    return kind


def _analyse_arf(parts: _Parts, found: _Findings) -> FeedbackKind:
    """RFC 5965: a complaint, with the reporter's fields first and the embedded original as fallback."""
    report: dict[str, str] = {}
    if parts.feedback is not None:
        for block in _parse_fields(_report_text(parts.feedback)):
            for name, value in block.items():
                report.setdefault(name, value)
    words = report.get("feedback-type", "").lower().replace(";", " ").split()
    feedback_type = words[0] if words and re.fullmatch(r"[a-z0-9._-]{1,64}", words[0]) else None
    original = parts.original
    found.offer(
        feedback_type=feedback_type,
        token=_scan_token(report.get("original-mail-from", ""), BOUNCE_PREFIX),
        recipient=(
            _clean_address(report.get("original-rcpt-to")) or _clean_address(report.get("removal-recipient"))
        ),
    )
    if original is not None:
        # Providers that redact Original-Rcpt-To often leave the original To alone.
        found.offer(recipient=_first_address(original, ("to",)))
    if feedback_type in _NOT_COMPLAINT_TYPES:
        return FeedbackKind.UNKNOWN
    return FeedbackKind.COMPLAINT


def _analyse_text_bounce(
    msg: Message,
    subject: str,
    head: str,
    failed_header: str | None,
    original: Message | None,
    found: _Findings,
) -> FeedbackKind:
    """Non-standard bounce: read recipient and codes from the notice text, before any quoted original."""
    # Some MTAs print DSN-style fields inline in the text.
    inline: dict[str, str] = {}
    for block in _parse_fields(head):
        for name in ("original-recipient", "final-recipient", "status", "diagnostic-code"):
            if name in block:
                inline.setdefault(name, block[name])
    excluded = {a.lower() for a in _addresses(msg, ("from", "to", "sender", "reply-to"))}
    angle = _ANGLE_RECIPIENT_RE.search(head)
    found.offer(
        recipient=_first_address_in(failed_header or "")
        or _clean_address(inline.get("original-recipient"))
        or _clean_address(inline.get("final-recipient"))
        or (_clean_address(angle.group(1)) if angle else None)
        # Rapport sends one recipient per message, so a returned original's To beats guessing from prose.
        or (_first_address(original, ("to",)) if original is not None else None)
        or _first_recipient_candidate(head, excluded)
    )
    inline_diagnostic = _strip_address_type(inline.get("diagnostic-code", ""))
    leading = _LEADING_CODE_RE.match(inline_diagnostic)
    status = _find_status(inline.get("status", "")) or _find_status(inline_diagnostic)
    code = int(leading.group(1)) if leading else None
    anchor = _first_failure(_CODE_STATUS_RE, head)
    if anchor is not None:
        code = code or int(anchor.group(1))
        status = status or _normalise_status(anchor.group(2), anchor.group(3), anchor.group(4))
    else:
        alone = _first_failure(_STATUS_RE, head)
        bare = _first_failure(_TEXT_CODE_RE, head)
        if alone is not None:
            status = status or _normalise_status(alone.group(1), alone.group(2), alone.group(3))
        if bare is not None:
            code = code or int(bare.group(1))
        anchor = alone or bare
    # Judge by the words around the code, not the whole notice with its boilerplate.
    context = _around(head, anchor.start(), anchor.end()) if anchor else head
    diagnostic = _squash(inline_diagnostic) or _line_at(head, anchor)
    found.offer(status=status, smtp_code=code, diagnostic=diagnostic)

    delayed = bool(_DELAY_SUBJECT_RE.search(subject) or _DELAY_BODY_RE.search(head))
    if delayed and (status is None or status[0] != "5") and (code is None or code < 500):
        return FeedbackKind.SOFT_BOUNCE
    if status or code:
        kind = _classify(code, status, context)
        if kind is not FeedbackKind.UNKNOWN:
            return kind
    if _USER_UNKNOWN_RE.search(head):
        return FeedbackKind.HARD_BOUNCE
    if _MAILBOX_FULL_RE.search(head):
        return FeedbackKind.SOFT_BOUNCE
    if _PERMANENT_RE.search(head):
        return FeedbackKind.HARD_BOUNCE
    # A bounce with no evidence either way: count it, so repeats still lead to suppression, but never suppress
    # a contact on a notice we could not read.
    return FeedbackKind.SOFT_BOUNCE


def _classify(code: int | None, status: str | None, text: str) -> FeedbackKind:
    """Shared rules for SMTP replies and DSN/NDR codes; see classify_smtp_reply for the reasoning."""
    if status:
        klass = status[0]
    elif code is not None and 200 <= code <= 599:
        klass = str(code)[0]
    else:
        return FeedbackKind.UNKNOWN
    if klass == "4":
        return FeedbackKind.SOFT_BOUNCE
    if klass != "5":
        return FeedbackKind.UNKNOWN
    if _USER_UNKNOWN_RE.search(text):
        return FeedbackKind.HARD_BOUNCE
    if status in _SOFT_5XX_STATUSES or (status is None and code == 552) or _MAILBOX_FULL_RE.search(text):
        return FeedbackKind.SOFT_BOUNCE
    if status is not None and status.startswith("5.7."):
        return FeedbackKind.SOFT_BOUNCE
    if (status is None or status.startswith("5.0.")) and _POLICY_RE.search(text):
        return FeedbackKind.SOFT_BOUNCE
    return FeedbackKind.HARD_BOUNCE


# --- MIME walking -------------------------------------------------------------------------------------------


def _collect_parts(msg: Message) -> _Parts:
    """Walk at most MAX_PARTS parts, MAX_DEPTH deep, without descending into the returned original."""
    found = _Parts()
    plain: list[str] = []
    markup: list[str] = []
    budget = MAX_TEXT_BYTES
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        ctype = _content_type(part)
        # `is None` rather than `or`: a Message with no headers is falsy.
        if ctype in _STATUS_TYPES:
            if found.status is None:
                found.status = part
            continue
        if ctype in _FEEDBACK_TYPES:
            if found.feedback is None:
                found.feedback = part
            continue
        if ctype in _MDN_TYPES:
            found.mdn = True
            continue
        if depth > 0 and ctype in _ORIGINAL_TYPES:
            # The original's own text is the newsletter, not the notice; only its headers are useful.
            if found.original is None:
                found.original = _original_headers(part)
            continue
        payload = _payload(part)
        if isinstance(payload, list):
            if depth < MAX_DEPTH:
                stack.extend((child, depth + 1) for child in reversed(payload) if isinstance(child, Message))
            continue
        # Attached text is usually the original in disguise (text/plain "message.txt"), not the notice.
        if budget <= 0 or _is_attachment(part):
            continue
        if ctype == "text/plain":
            text = _decoded_text(part, budget)
            plain.append(text)
            budget -= len(text)
        elif ctype == "text/html":
            text = _html_to_text(_decoded_text(part, budget))
            markup.append(text)
            budget -= len(text)
    # Plain text is what MTAs mean to be read; HTML only when there is nothing else (some Exchange NDRs).
    found.notice = "\n".join(plain or markup)
    return found


def _original_headers(part: Message) -> Message | None:
    """Headers of a returned original, whether attached whole (message/rfc822) or as text/rfc822-headers."""
    payload = _payload(part)
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else None
    text = _decoded_text(part, MAX_TEXT_BYTES).lstrip("\r\n")
    if not text.strip():
        return None
    return Parser(policy=compat32).parsestr(text, headersonly=True)


def _report_text(part: Message) -> str:
    """Flatten a delivery-status or feedback-report part back into 'Name: value' lines and blank lines."""
    payload = _payload(part)
    if not isinstance(payload, list):
        return _decoded_text(part, MAX_TEXT_BYTES)
    # The stdlib parses each block of a delivery-status part (and a feedback-report) into a headers-only
    # message.
    chunks: list[str] = []
    size = 0
    for block in payload[:MAX_PARTS]:
        if not isinstance(block, Message):
            continue
        lines = [f"{name}: {_header_text(value)}" for name, value in block.items()]
        body = _payload(block)
        if isinstance(body, str):
            lines.append(body)
        chunk = "\n".join(lines)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_TEXT_BYTES:
            break
    return "\n\n".join(chunks)[:MAX_TEXT_BYTES]


def _parse_fields(text: str) -> list[dict[str, str]]:
    """Parse 'Name: value' blocks separated by blank lines; continuation lines fold in, first name wins."""
    blocks: list[dict[str, str]] = []
    current: dict[str, list[str]] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append({k: " ".join(v) for k, v in current.items()})
                current, last = {}, None
            continue
        if line[0] in " \t":
            if last is not None:
                current[last].append(line.strip())
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if colon and name not in current and _FIELD_NAME_RE.fullmatch(name):
            current[name] = [value.strip()]
            last = name
        else:
            last = None
    if current:
        blocks.append({k: " ".join(v) for k, v in current.items()})
    return blocks


# --- small helpers ------------------------------------------------------------------------------------------


def _as_bytes(raw: object) -> bytes | None:
    """Accept bytes-like input (and str, leniently); anything else has nothing to classify."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, bytearray | memoryview):
        return bytes(raw[:MAX_PARSE_BYTES])
    if isinstance(raw, str):
        return raw[:MAX_PARSE_BYTES].encode("utf-8", "surrogatepass")
    return None


def _parse_budget(data: bytes) -> bytes:
    """Cut input down to what the stdlib parser can handle quickly whatever its shape."""
    if len(data) > MAX_PARSE_BYTES:
        logger.debug("inbound message of %d bytes cut to %d before parsing", len(data), MAX_PARSE_BYTES)
        data = data[:MAX_PARSE_BYTES]
    # The parser takes a lone CR as a line break too; one convention makes the line counts below hold.
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    # Runs of blank lines mean nothing to classification, but inside message/delivery-status each one opens
    # a new block object.
    data = _BLANK_RUN_RE.sub(b"\n\n", data)
    for count, match in enumerate(_STRUCTURE_LINE_RE.finditer(data)):
        if count >= MAX_STRUCTURE_LINES:
            return data[: match.start() + 1]
    return data


def _payload(part: Message) -> object:
    try:
        return part.get_payload()
    except Exception:
        return None


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "text/plain"


def _param(part: Message, name: str) -> str | None:
    try:
        value = part.get_param(name)
    except Exception:
        return None
    if value is None:
        return None
    return str(collapse_rfc2231_value(value)).strip().lower()


def _is_attachment(part: Message) -> bool:
    try:
        return (part.get_content_disposition() or "") == "attachment"
    except Exception:
        return False


def _decoded_text(part: Message, limit: int) -> str:
    """Transfer-decode and charset-decode a leaf part, at most limit bytes, never raising on bad charsets."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        return ""
    data = data[: max(limit, 0)]
    try:
        charset = part.get_content_charset() or "utf-8"
        text = data.decode(charset, errors="replace")
    except Exception:  # unknown or non-text codec named by the sender
        text = data.decode("utf-8", errors="replace")
    return _clean_text(text.replace("\r\n", "\n").replace("\r", "\n"))


def _html_to_text(markup: str) -> str:
    # Crude on purpose: only phrases, codes and addresses are looked for, never layout.
    return html.unescape(_HTML_TAG_RE.sub(" ", markup))


def _header_text(value: object) -> str:
    """A header value (str or email.header.Header) as unicode, with RFC 2047 encoded words decoded."""
    text = str(value)
    if "=?" in text:
        try:
            text = str(make_header(decode_header(text)))
        except Exception:  # broken encoded-words are common in the wild; the raw text is still useful
            pass
    return _clean_text(text)


def _header_values(msg: Message, names: Iterable[str]) -> list[str]:
    values: list[str] = []
    for name in names:
        try:
            found = msg.get_all(name) or []
        except Exception:
            found = []
        values.extend(_header_text(v) for v in found[:20])
    return values


def _first_header(msg: Message, name: str) -> str | None:
    values = _header_values(msg, (name,))
    return values[0] if values else None


def _addresses(msg: Message, names: Iterable[str]) -> list[str]:
    values = _header_values(msg, names)
    try:
        pairs = getaddresses(values)
    except Exception:
        return []
    return [a for a in (_clean_address(addr) for _, addr in pairs) if a]


def _first_address(msg: Message, names: Iterable[str]) -> str | None:
    found = _addresses(msg, names)
    return found[0] if found else None


def _first_address_in(text: str) -> str | None:
    match = _ADDR_RE.search(text)
    return _clean_address(match.group(1)) if match else None


def _first_recipient_candidate(text: str, excluded: set[str]) -> str | None:
    """First address in a notice that is neither ours, the reporting daemon's, nor a header party's."""
    for count, match in enumerate(_ADDR_RE.finditer(text)):
        if count >= 50:
            break
        address = match.group(1).rstrip(".")
        local = address.partition("@")[0].lower()
        if address.lower() in excluded or local in _DAEMON_LOCALPARTS:
            continue
        if local.startswith((BOUNCE_PREFIX + "+", UNSUBSCRIBE_PREFIX + "+")):
            continue
        return _clean_address(address)
    return None


def _is_daemon(address: str | None, display: str) -> bool:
    local = (address or "").partition("@")[0].lower()
    return local in _DAEMON_LOCALPARTS or bool(_DAEMON_NAME_RE.search(display))


def _strong_auto_reply(msg: Message, subject: str) -> bool:
    """RFC 3834 responders and the common vendor headers, or an out-of-office subject line."""
    if _header_values(msg, _AUTO_REPLY_HEADERS):
        return True
    precedence = (_first_header(msg, "precedence") or "").strip().lower()
    return precedence == "auto_reply" or bool(_OOO_SUBJECT_RE.search(subject))


def _auto_submitted(msg: Message) -> bool:
    value = (_first_header(msg, "auto-submitted") or "").strip().lower()
    return bool(value) and not value.startswith("no")


def _scan_token(text: str, prefix: str) -> str | None:
    match = _PREFIX_SCAN[prefix].search(text)
    return match.group(1) if match else None


def _valid_token(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value if _TOKEN_RE.fullmatch(value) else None


def _strip_address_type(value: str) -> str:
    """'rfc822; user@example.com' -> 'user@example.com'; 'smtp; 550 ...' -> '550 ...'."""
    match = _ADDRESS_TYPE_RE.match(value)
    return value[match.end():].strip() if match else value.strip()


def _clean_address(value: str | None) -> str | None:
    """A single bare addr-spec from a DSN/ARF field or header value, or None if it does not look like one."""
    if not value:
        return None
    text = _strip_address_type(_clean_text(value)[: _MAX_ADDRESS * 4])
    bracketed = re.search(r"<([^<>]*)>", text)
    if bracketed:
        text = bracketed.group(1).strip()
    words = text.split()
    if not words:
        return None
    text = words[0].strip("<>")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or "@" in local or len(text) > _MAX_ADDRESS:
        return None
    return text


def _clean_message_id(value: str | None) -> str | None:
    """Message-ID with its angle brackets, as Rapport generated it; bare ids get brackets added."""
    if not value:
        return None
    match = _MSGID_RE.search(value)
    if match:
        return f"<{match.group(1)}>"
    bare = value.strip()
    clean = not any(c.isspace() or c in "<>" for c in bare)
    if bare and clean and "@" in bare and len(bare) <= _MAX_MESSAGE_ID - 2:
        return f"<{bare}>"
    return None


def _find_status(text: str) -> str | None:
    """First enhanced status in a single reply or field; transcripts go through _first_failure instead."""
    match = _STATUS_RE.search(text)
    return _normalise_status(*match.groups()) if match else None


def _first_failure(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """First match whose class is 4 or 5: transcripts show successful 250/2.x.x steps before the failure."""
    for count, match in enumerate(pattern.finditer(text)):
        if count >= 50:
            break
        if match.group(1)[0] in "45":
            return match
    return None


def _normalise_status(klass: str, subject: str, detail: str) -> str:
    # Leading zeros ("5.1.01") occur in the wild; RFC 3463 has none.
    return f"{int(klass)}.{int(subject)}.{int(detail)}"


def _before_original(text: str) -> str:
    marker = _ORIGINAL_MARKER_RE.search(text)
    return text[: marker.start()] if marker else text


def _around(text: str, start: int, end: int, margin: int = 300) -> str:
    return text[max(0, start - margin): end + margin]


def _line_at(text: str, match: re.Match[str] | None) -> str | None:
    if match is None:
        return None
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    return _squash(text[start: end if end != -1 else len(text)])


def _clean_text(text: str) -> str:
    # compat32 keeps undecodable bytes as lone surrogates; they must not leak into results or logs.
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _squash(text: str) -> str:
    text = "".join(c if c.isprintable() or c.isspace() else " " for c in text[: MAX_DIAGNOSTIC * 8])
    return " ".join(text.split())[:MAX_DIAGNOSTIC]


def _bounded(value: str | None, limit: int) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return _clean_text(value)[:limit]
