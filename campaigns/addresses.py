"""Email address syntax: the one normalisation every address goes through (contacts, users, sender identities).

A foundation module because accounts (users, senders) and contacts both validate addresses and accounts sits
below contacts.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from campaigns.errors import ValidationError


def normalize_email(raw: str, *, own_address: bool = False) -> str:
    """Validate syntax and return the address lower-cased; raises ValidationError with the reason.

    Recipients on special-use domains (.test, .invalid, localhost…) are refused: mail to them can never arrive.
    Our own sender addresses may use them, so a staging setup can send as news@shop.test.
    """
    try:
        result = validate_email((raw or "").strip(), check_deliverability=False,
                                globally_deliverable=not own_address, test_environment=own_address)
    except EmailNotValidError as exc:
        raise ValidationError(f"{raw!r} is not a valid email address: {exc}", field="email") from None
    return result.normalized.lower()
