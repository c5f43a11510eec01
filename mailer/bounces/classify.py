"""Hard or soft: the rules that turn an SMTP reply code, an RFC 3463 enhanced status and the wording around them
into a :class:`~mailer.bounces.vocabulary.FeedbackKind`.

Shared by send-time replies (:func:`classify_smtp_reply`), DSN diagnostic codes and non-standard bounce text, so
one reply means the same whichever way it reached Rapport.
"""

from __future__ import annotations

import re

from mailer.bounces.vocabulary import MAX_TEXT_BYTES, FeedbackKind

# Enhanced status (RFC 3463). The look-arounds keep IP addresses and versions ("10.4.2.2", "5.1.1.3") out.
STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
LEADING_CODE_RE = re.compile(r"\s{0,16}([245]\d\d)(?![\d.])")

# The address itself is bad; decisive even under a 5.7.x code some servers misuse for unknown users.
USER_UNKNOWN_RE = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient|address|account)|n[o']t exist"
    r"|address (?:not found|unknown)|recipient (?:not found|unknown)|unknown (?:recipient|address|mailbox)"
    r"|invalid (?:recipient|mailbox|address)|mailbox (?:unavailable|not found)|account (?:has been )?disabled"
    r"|(?:account|mailbox) is disabled|no mailbox here|not a valid (?:mailbox|recipient|user)"
    r"|addressee unknown"
    r"|recip(?:ient)?notfound|address couldn't be found|doesn't have an? [\w.-]{1,40} account",
    re.I,
)
MAILBOX_FULL_RE = re.compile(
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

# Statuses in class 5 that say nothing bad about the address: the mailbox is full (RFC 3463 X.2.2; many
# providers send it as permanent although it clears once the owner cleans up) or this message was too big
# (X.2.3, X.3.4). Counting them as soft lets repeated failures suppress without losing a contact to one.
_SOFT_5XX_STATUSES = frozenset({"5.2.2", "5.2.3", "5.3.4"})


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
        leading = LEADING_CODE_RE.match(text)
        code = int(leading.group(1)) if leading else None
    return classify_codes(code, find_status(text), text)


def classify_codes(code: int | None, status: str | None, text: str) -> FeedbackKind:
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
    if USER_UNKNOWN_RE.search(text):
        return FeedbackKind.HARD_BOUNCE
    if status in _SOFT_5XX_STATUSES or (status is None and code == 552) or MAILBOX_FULL_RE.search(text):
        return FeedbackKind.SOFT_BOUNCE
    if status is not None and status.startswith("5.7."):
        return FeedbackKind.SOFT_BOUNCE
    if (status is None or status.startswith("5.0.")) and _POLICY_RE.search(text):
        return FeedbackKind.SOFT_BOUNCE
    return FeedbackKind.HARD_BOUNCE


def find_status(text: str) -> str | None:
    """First enhanced status in a single reply or field; transcripts go through first_failure instead."""
    match = STATUS_RE.search(text)
    return normalise_status(*match.groups()) if match else None


def first_failure(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """First match whose class is 4 or 5: transcripts show successful 250/2.x.x steps before the failure."""
    for count, match in enumerate(pattern.finditer(text)):
        if count >= 50:
            break
        if match.group(1)[0] in "45":
            return match
    return None


def normalise_status(klass: str, subject: str, detail: str) -> str:
    # Leading zeros ("5.1.01") occur in the wild; RFC 3463 has none.
    return f"{int(klass)}.{int(subject)}.{int(detail)}"
