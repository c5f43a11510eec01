"""Every URL a recipient follows, built in one place from the base URL and a sealed token.

The paths here are the public routes of campaigns.web.public (a test checks that the app's URL map has a rule for
each): open pixel /o/, click /c/ (a transactional message's: /to/, /tc/), unsubscribe /u/, preference center /p/,
web version /m/, survey /s/, event reply /e/ (and its calendar file /e/<token>.ics), sign-up confirmation
/signup/confirm/, prize draw entry /d/, a draw's public page /draws/<public id>, and a sign-up form's hosted page
/signup/<public id>. Services that write mail or pages (delivery, digest, click targets, surveys, events, sign-up,
draws) build their links through these functions, so a path changes in one place and the admin's outbox
(campaigns.composing.inspection) recognises the same ones. The preference center's details page is the preference
URL + DETAILS ("/p/<token>/details", as the mail footer writes it).
"""

from __future__ import annotations

from mailer.tracking import Purpose, TokenCodec

# Path prefix of each token purpose a recipient opens (MESSAGE tokens travel in headers, never as a URL).
PATHS: dict[Purpose, str] = {
    Purpose.OPEN: "/o/",
    Purpose.CLICK: "/c/",
    Purpose.UNSUBSCRIBE: "/u/",
    Purpose.PREFERENCES: "/p/",
    Purpose.WEB: "/m/",
    Purpose.SURVEY: "/s/",
    Purpose.CONFIRM: "/signup/confirm/",
    Purpose.DRAW: "/d/",
    Purpose.TX_OPEN: "/to/",        # a transactional message's open pixel and clicks (its own tokens: no send row)
    Purpose.TX_CLICK: "/tc/",
    Purpose.EVENT: "/e/",
}
SIGNUP_FORM = "/signup/"      # + the form's public id (not a token: the page is public)
DETAILS = "/details"          # after a preference center URL: the contact's details page
DRAW_PAGE = "/draws/"         # + a draw's public id: its public page (rules, committed seed hash, entries, winners)
CALENDAR = ".ics"             # after an event reply URL (answer 0): the event's calendar file


def url(base_url: str, purpose: Purpose, token: str) -> str:
    """The URL that opens token (sealed for purpose) on this deployment."""
    return f"{base_url}{PATHS[purpose]}{token}"


def sealed(base_url: str, tokens: TokenCodec, purpose: Purpose, *ids: int) -> str:
    """Seal ids for purpose and return the URL that opens them."""
    return url(base_url, purpose, tokens.seal(purpose, *ids))


def prefix(base_url: str, purpose: Purpose) -> str:
    """Every URL of purpose starts with this (what the composer shows before a survey token)."""
    return f"{base_url}{PATHS[purpose]}"


def signup_form(base_url: str, public_id: str) -> str:
    """The hosted page of a sign-up form (also where its embeddable snippet posts)."""
    return f"{base_url}{SIGNUP_FORM}{public_id}"


def draw_page(base_url: str, public_id: str) -> str:
    """The public page of a prize draw (append ".json" for its published data)."""
    return f"{base_url}{DRAW_PAGE}{public_id}"


def purpose_of(path: str) -> tuple[Purpose, str] | None:
    """(purpose, token) of a recipient URL's path ("/c/<token>"), or None for any other path."""
    for purpose, start in PATHS.items():
        if path.startswith(start) and "/" not in path[len(start):]:
            return purpose, path[len(start):]
    return None


REPLY_PREFIX = "reply"        # reply+<REPLY token>@<reply domain>: where a recipient's answer to a message goes


def reply_address(tokens: TokenCodec, domain: str, send_id: int) -> str:
    """The per-recipient reply address of a send (its Reply-To when reply addresses are on)."""
    return f"{REPLY_PREFIX}+{tokens.seal(Purpose.REPLY, send_id)}@{domain}"
