"""DMARC alignment of From addresses with the DKIM signing domain, and the DNS records each sending domain needs.

A receiver applying DMARC passes a message only when an authenticated domain (the DKIM d= or the SPF-checked
envelope sender) matches the From domain. Rapport signs every message for DKIM_DOMAIN, so a From address on any
other domain fails DMARC wherever its owner publishes a policy (gmail.com, most shops). Alignment here is DMARC's
relaxed mode without a public-suffix list: equal domains, or one a subdomain of the other.

The From identity of a campaign (FROM_OWNER, from_identity) lives here too: alignment checks it, and sender
identities are account data; campaigns.composing.editor uses both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.errors import ValidationError
from campaigns.models import Campaign, Sender

Resolver = Callable[[str], list[str]]
# Campaign.from_email of "from the contact's account owner": each recipient hears from their own Contact.owner.
FROM_OWNER = "owner"


class UnalignedFrom(ValidationError):
    """A From address whose domain no active DKIM key signs for, without the explicit override."""


def domain_of(address: str) -> str:
    """The lower-case domain of an email address ("" when there is none)."""
    return address.rpartition("@")[2].strip().rstrip(".").lower() if "@" in address else ""


def aligned(from_domain: str, signing_domain: str) -> bool:
    """Whether DKIM for signing_domain aligns with From: from_domain under DMARC's relaxed mode."""
    a, b = from_domain.lower().rstrip("."), signing_domain.lower().rstrip(".")
    return bool(a and b) and (a == b or a.endswith("." + b) or b.endswith("." + a))


def unaligned_message(address: str, settings: Settings) -> str:
    """What a marketer reads when a From address would fail DMARC."""
    return (f"Mail from {address} is DKIM-signed for {settings.dkim_domain} only, so receivers checking DMARC "
            f"for {domain_of(address)} will reject it or file it as spam. Use an address at {settings.dkim_domain} "
            "(or a subdomain of it), or tick “Send anyway” if that domain authorises this server in another way.")


def check_from(address: str, settings: Settings, *, override: bool, field_name: str = "from_email") -> str:
    """Raise UnalignedFrom for an unaligned address unless override; returns the warning to show ("" if aligned)."""
    if not address or "@" not in address or aligned(domain_of(address), settings.dkim_domain):
        return ""
    message = unaligned_message(address, settings)
    if not override:
        raise UnalignedFrom(message, field=field_name)
    return message


# ---------------------------------------------------------------- DNS records per sending domain

@dataclass(frozen=True)
class RecordCheck:
    """One DNS record: where it lives, what was found there, whether that is good, and what to publish."""

    kind: str                       # SPF, DKIM or DMARC
    name: str
    found: tuple[str, ...]
    ok: bool
    note: str
    publish: str = ""               # a zone-file line to add, when something is missing or wrong


@dataclass(frozen=True)
class DomainReport:
    """A domain mail is sent from: alignment with the DKIM domain and its SPF, DKIM and DMARC records."""

    domain: str
    aligned: bool
    checks: list[RecordCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.aligned and all(c.ok for c in self.checks)


def _lookup(resolve: Resolver, name: str) -> tuple[str, ...]:
    try:
        return tuple(resolve(name))
    except Exception:
        return ()


def _spf(domain: str, resolve: Resolver) -> RecordCheck:
    found = tuple(r for r in _lookup(resolve, domain) if r.lower().startswith("v=spf1"))
    suggestion = f'{domain}. IN TXT "v=spf1 mx a ~all"'
    if not found:
        return RecordCheck("SPF", domain, (), False, "No SPF record: receivers cannot tell which servers may send "
                           "for this domain. List your relay's servers (its provider documents an include:).",
                           suggestion)
    if len(found) > 1:
        return RecordCheck("SPF", domain, found, False, "More than one SPF record: receivers treat that as an "
                           "error (RFC 7208 4.5). Merge them into one.", "")
    return RecordCheck("SPF", domain, found, True, "An SPF record is published.")


def _dkim(records: Sequence[tuple[str, str]], resolve: Resolver) -> list[RecordCheck]:
    checks = []
    for name, value in records:
        found = _lookup(resolve, name)
        wanted = _p_tag(value)
        ok = any(_p_tag(r) == wanted for r in found)
        note = ("The public key matches the key that signs." if ok else
                "A TXT record is there, but not this key's." if found else "No DKIM record yet: signatures fail.")
        checks.append(RecordCheck("DKIM", name, found, ok, note, "" if ok else f'{name}. IN TXT "{value}"'))
    return checks


def _dmarc(domain: str, resolve: Resolver) -> RecordCheck:
    name = f"_dmarc.{domain}"
    found = tuple(r for r in _lookup(resolve, name) if r.lower().replace(" ", "").startswith("v=dmarc1"))
    suggestion = f'{name}. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@{domain}"'
    if not found:
        return RecordCheck("DMARC", name, (), False, "No DMARC policy: the largest mailbox providers require one "
                           "from bulk senders. Start with p=none and tighten it once reports look clean.",
                           suggestion)
    return RecordCheck("DMARC", name, found, True, "A DMARC policy is published.")


def _p_tag(value: str) -> str:
    for part in value.split(";"):
        name, _sep, tag_value = part.partition("=")
        if name.strip() == "p":
            return "".join(tag_value.split())
    return ""


def domain_reports(domains: Iterable[str], settings: Settings, dkim_records: Sequence[tuple[str, str]],
                   resolve: Resolver) -> list[DomainReport]:
    """Per sending domain: aligned or not, and the SPF, DKIM and DMARC records DNS has (resolve: name -> TXT strings).

    dkim_records: (record name, TXT value) of each signing key. SPF is checked where receivers check it: the
    envelope sender's domain (BOUNCE_DOMAIN, else DKIM_DOMAIN), once, with the domain it belongs to.
    """
    reports = []
    for domain in sorted({d.lower() for d in domains if d}):
        is_aligned = aligned(domain, settings.dkim_domain)
        checks: list[RecordCheck] = []
        if is_aligned:
            if domain == settings.return_domain:
                checks.append(_spf(domain, resolve))
            checks.extend(_dkim(dkim_records, resolve))
        checks.append(_dmarc(domain, resolve))
        reports.append(DomainReport(domain, is_aligned, checks))
    if settings.return_domain not in {r.domain for r in reports}:
        reports.append(DomainReport(settings.return_domain, True, [_spf(settings.return_domain, resolve)]))
    return reports


def from_identity(campaign: Campaign, settings: Settings) -> tuple[str, str]:
    """(name, address) of the From header; in owner mode, the default for contacts without an owner."""
    if campaign.from_email == FROM_OWNER:
        return settings.sender_name, settings.sender_email
    return campaign.from_name or settings.sender_name, campaign.from_email or settings.sender_email


def check_campaign_from(session: Session, campaign: Campaign, settings: Settings) -> None:
    """Raise UnalignedFrom when a campaign would send from a domain its DKIM signature does not align with.

    Owner mode sends as every sender identity; each must be aligned or carry its own override.
    """
    _name, address = from_identity(campaign, settings)
    check_from(address, settings, override=campaign.allow_unaligned_from)
    if campaign.from_email == FROM_OWNER:
        for sender in session.scalars(select(Sender).order_by(Sender.id)):
            if not sender.allow_unaligned:
                check_from(sender.email, settings, override=False, field_name="sender")


def sending_domains(session: Session, settings: Settings) -> list[str]:
    """Every domain mail goes out from: the default sender, sender identities and campaigns' own addresses."""
    domains = {domain_of(settings.sender_email)}
    domains.update(domain_of(e) for e in session.scalars(select(Sender.email)))
    domains.update(domain_of(e) for e in session.scalars(
        select(Campaign.from_email).where(Campaign.from_email != "", Campaign.from_email != FROM_OWNER).distinct()))
    return sorted(d for d in domains if d)
