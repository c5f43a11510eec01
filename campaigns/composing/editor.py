"""Campaigns: create and edit, sender identity, validate and compliance, compile (cached), link table.

What a feature adds to a campaign (a coupon pool, a survey) comes through campaigns.composing.contributions; the
composer's preview is campaigns.composing.preview, the starter templates campaigns.composing.starters.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from markupsafe import escape
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, object_session

from campaigns.accounts.alignment import FROM_OWNER
from campaigns.accounts.alignment import from_identity as from_identity  # an account concept, still reached here
from campaigns.accounts.settings_store import postal_address as configured_postal_address
from campaigns.addresses import normalize_email
from campaigns.composing import contributions, sample
from campaigns.config import Settings
from campaigns.db import parse_id
from campaigns.errors import InvalidState, NotFound, ValidationError
from campaigns.models import Campaign, CampaignKind, CampaignStatus, Contact, Link, Segment, Sender, Topic
from mailer.compose import (
    CampaignSource,
    CompiledCampaign,
    TemplateError,
    compile_campaign,
    valid_language,
)
from mailer.tracking import TokenCodec

logger = logging.getLogger(__name__)

LINK_STRIDE = 10_000      # link positions per A/B variant: variant v's links are at v * LINK_STRIDE + i
EDITABLE_STATUSES = {CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.PAUSED}
MAX_SOURCE_CHARS = 400_000
SLUG = re.compile(r"[a-z][a-z0-9-]{0,99}")   # a transactional template's API name
_cache: OrderedDict[str, CompiledCampaign] = OrderedDict()
_CACHE_SIZE = 32


def base_url_warning(settings: Settings) -> str:
    """Why an http:// BASE_URL matters (empty when https): shown in the admin; the reason campaigns are refused."""
    if urlsplit(settings.base_url).scheme == "https":
        return ""
    why = (f"BASE_URL is {settings.base_url}, not https://: the unsubscribe link in every mail's List-Unsubscribe "
           "header is then http://, and the largest mailbox providers offer one-click unsubscribe only over https.")
    if settings.allow_http_base_url:
        return why + (" Allowed here (a demo or trial, or RAPPORT_ALLOW_HTTP_BASE_URL=1); set the public https:// "
                      "address before mailing real people.")
    return why + (" Campaigns are refused until BASE_URL is the public https:// address of the web app "
                  "(RAPPORT_ALLOW_HTTP_BASE_URL=1 allows http for a trial).")


def check_base_url(campaign: Campaign, settings: Settings) -> None:
    """Refuse to start a marketing or nurture campaign over an http:// BASE_URL unless explicitly allowed."""
    if campaign.kind == CampaignKind.TRANSACTIONAL or settings.allow_http_base_url:
        return
    problem = base_url_warning(settings)
    if problem:
        raise ValidationError(problem)


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    """Load one campaign or raise NotFound."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return campaign


def source_of(campaign: Campaign) -> CampaignSource:
    """The parts of a campaign that determine its compiled form."""
    return CampaignSource(mjml=campaign.mjml, subject=campaign.subject, preheader=campaign.preheader,
                          text_body=campaign.text_body, transactional=campaign.kind == CampaignKind.TRANSACTIONAL,
                          lang=campaign.language or "")


def compiled(campaign: Campaign) -> CompiledCampaign:
    """Compile once per content hash per process; editing the campaign changes the hash and so the entry."""
    return compile_source(source_of(campaign))


def compile_source(src: CampaignSource) -> CompiledCampaign:
    """Compile a source once per content hash per process (a campaign's, or an A/B variant's)."""
    key = src.content_hash()
    hit = _cache.get(key)
    if hit is not None:
        _cache.move_to_end(key)
        return hit
    result = compile_campaign(src)
    _cache[key] = result
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return result


def save_campaign(session: Session, data: Mapping[str, Any], campaign: Campaign | None = None,
                  topic_ids: Iterable[int] = (), relay_names: Iterable[str] = ()) -> Campaign:
    """Create or update a draft from form-like data; invalid templates are saved but reported (with line)."""
    if campaign is not None and campaign.status not in EDITABLE_STATUSES:
        raise InvalidState(f"a {campaign.status} campaign can no longer be edited")
    name = str(data.get("name", "")).strip()
    subject = str(data.get("subject", "")).strip()
    if not name:
        raise ValidationError("give the campaign a name", field="name")
    if not subject:
        raise ValidationError("the subject is empty", field="subject")
    for key, label, limit in (("name", "name", 200), ("subject", "subject", 998), ("preheader", "preheader", 500)):
        if len(str(data.get(key, "") or "").strip()) > limit:
            raise ValidationError(f"the {label} is longer than {limit} characters", field=key)
    kind = str(data.get("kind", CampaignKind.NURTURE))
    if kind not in CampaignKind.__members__.values():
        raise ValidationError(f"unknown kind {kind!r}", field="kind")
    from_name, from_email, reply_to = _sender_fields(session, data)
    language = str(data.get("language", "") or "").strip()
    if "language" in data and not valid_language(language):
        raise ValidationError("the language is a code such as en, de or pt-BR", field="language")
    if len(str(data.get("mjml", "") or "")) > MAX_SOURCE_CHARS:
        raise ValidationError(f"the content is longer than {MAX_SOURCE_CHARS:,} characters", field="mjml")
    relay = str(data.get("relay", "") or "").strip()
    known_relays = list(relay_names)
    if relay and known_relays and relay not in known_relays:
        raise ValidationError(f"there is no relay called {relay!r}; configured: {', '.join(known_relays)}",
                              field="relay")
    segment_id = _segment_id(session, data.get("segment_id"))
    slug = _slug(session, data, campaign, name) if kind == CampaignKind.TRANSACTIONAL else None
    content = "\n".join(str(data.get(k, "") or "") for k in ("subject", "mjml", "text_body"))
    chosen = {name: value for contributor in contributions.contributors()
              for name, value in contributor.choose(session, data, campaign, content).items()}
    if campaign is None:
        campaign = Campaign(status=CampaignStatus.DRAFT)
        session.add(campaign)
    campaign.relay = "" if relay == (known_relays[0] if known_relays else "") else relay
    campaign.name = name
    campaign.subject = subject
    campaign.kind = CampaignKind(kind)
    campaign.slug = slug
    campaign.preheader = str(data.get("preheader", "") or "").strip()
    campaign.from_name = from_name
    campaign.from_email = from_email
    campaign.reply_to = reply_to
    campaign.allow_unaligned_from = bool(data.get("allow_unaligned_from"))
    if "language" in data:
        campaign.language = language
    campaign.mjml = form_text(data.get("mjml"))
    campaign.text_body = form_text(data.get("text_body"))
    campaign.all_contacts = bool(data.get("all_contacts"))
    if "valid_until" in data:
        campaign.valid_until = parse_valid_until(data.get("valid_until"), campaign.valid_until)
    ids = set(topic_ids)
    campaign.topics = list(session.scalars(select(Topic).where(Topic.id.in_(ids)))) if ids else []
    campaign.segment_id = segment_id
    for name, value in chosen.items():     # a coupon pool, a survey… (campaigns.composing.contributions)
        setattr(campaign, name, value)
    session.flush()
    return campaign


def _slug(session: Session, data: Mapping[str, Any], campaign: Campaign | None, name: str) -> str:
    """A transactional template's API name: the one given (unique), else the one it had, else made from the name."""
    raw = str(data.get("slug", "") or "").strip().lower()

    def taken(slug: str) -> bool:
        return session.scalar(select(Campaign.id).where(Campaign.slug == slug)) not in (None, getattr(campaign, "id",
                                                                                                      None))

    if raw:
        if not SLUG.fullmatch(raw):
            raise ValidationError("the API name is a lower-case letter, then letters, digits or hyphens (at most "
                                  "100)", field="slug")
        if taken(raw):
            raise ValidationError(f"another template is already called {raw!r}", field="slug")
        return raw
    if campaign is not None and campaign.slug:
        return campaign.slug
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80]
    base = base if base[:1].isalpha() else f"template-{base}".rstrip("-")
    slug, n = base, 1
    while taken(slug):
        n += 1
        slug = f"{base}-{n}"
    return slug


def _segment_id(session: Session, raw: Any) -> int | None:
    """The chosen segment's id ("" = none); a segment that does not exist is refused."""
    text = str(raw or "").strip()
    if not text:
        return None
    if (ident := parse_id(text)) is None or session.get(Segment, ident) is None:
        raise ValidationError("the chosen segment does not exist (any more)", field="segment_id")
    return ident


def parse_valid_until(raw: object, current: dt.datetime | None = None) -> dt.datetime | None:
    """A date (valid through the end of that day, UTC) or date and time (UTC) from the form; empty clears it."""
    text = str(raw or "").strip()
    if not text:
        return None
    try:
        if len(text) <= 10:
            value = dt.datetime.combine(dt.date.fromisoformat(text), dt.time(23, 59, 59), dt.UTC)
        else:
            value = dt.datetime.fromisoformat(text).replace(second=0, microsecond=0)
            value = value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValidationError("valid until: enter a date like 2026-12-24 (or a date and time)",
                              field="valid_until") from None
    if value != current and value <= dt.datetime.now(dt.UTC):
        raise ValidationError("valid until: choose a moment in the future", field="valid_until")
    return value


def form_text(value: object) -> str:
    """A textarea's text with browser line ends (CRLF) made LF, as the MJML parser and line numbers expect."""
    return str(value or "").replace("\r\n", "\n").replace("\r", "\n")


def validate(campaign: Campaign, session: Session | None = None) -> CompiledCampaign:
    """Compile and render for the sample contact (sample.check), raising ValidationError with the line number on
    MJML or template errors and with the fix when a coupon pool or survey the campaign carries is not shown."""
    if not campaign.mjml.strip():
        raise ValidationError("the campaign has no content yet", field="mjml")
    try:
        result = compiled(campaign)
        sample.check(session if session is not None else object_session(campaign), campaign, result)
    except TemplateError as exc:
        raise ValidationError(str(exc), field="mjml") from None
    return result


def ensure_links(session: Session, campaign: Campaign, result: CompiledCampaign, base: int = 0) -> list[int]:
    """Store the campaign's link table (position -> url) and return link ids by position. Flushes.

    Written with INSERT … ON CONFLICT DO NOTHING and plain UPDATE/DELETE against the table, not through the loaded
    `campaign.links`: a send and a preview of the same campaign may store it at the same moment (two PostgreSQL
    transactions), and a collection loaded before the other one committed would insert its rows a second time.
    base: where the positions start; an A/B variant's links live at base = variant * LINK_STRIDE.
    """
    table = Link.__table__
    wanted = list(result.links)
    if wanted:
        dialect = session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        session.execute(insert(table).values([{"campaign_id": campaign.id, "position": base + i, "url": url}
                                              for i, url in enumerate(wanted)])
                        .on_conflict_do_nothing(index_elements=["campaign_id", "position"]))
    span = (Link.position >= base, Link.position < base + LINK_STRIDE)
    stored = dict(session.execute(select(Link.position, Link.url).where(Link.campaign_id == campaign.id, *span)).all())
    for position, url in enumerate(wanted, start=base):
        if stored.get(position) != url:
            session.execute(update(table).where(table.c.campaign_id == campaign.id, table.c.position == position)
                            .values(url=url))
    if len(stored) > len(wanted):
        session.execute(delete(table).where(table.c.campaign_id == campaign.id,
                                            table.c.position >= base + len(wanted),
                                            table.c.position < base + LINK_STRIDE))
    session.flush()
    session.expire(campaign, ["links"])
    return link_ids(session, campaign.id, base)


def link_ids(session: Session, campaign_id: int, base: int = 0) -> list[int]:
    """Link ids of a campaign (or of its A/B variant whose links start at base) ordered by position."""
    return list(session.scalars(select(Link.id).where(Link.campaign_id == campaign_id, Link.position >= base,
                                                      Link.position < base + LINK_STRIDE).order_by(Link.position)))


def links_per_message(session: Session, campaign_id: int) -> dict[int, int]:
    """link id -> how many links the message holding it has (a campaign's, or one A/B variant's: its block)."""
    rows = session.execute(select(Link.id, Link.position).where(Link.campaign_id == campaign_id)).all()
    per_block = collections.Counter(position // LINK_STRIDE for _id, position in rows)
    return {link_id: per_block[position // LINK_STRIDE] for link_id, position in rows}


# ---------------------------------------------------------------- sender identity

def _sender_fields(session: Session, data: Mapping[str, Any]) -> tuple[str, str, str]:
    """(from_name, from_email, reply_to) from the form's sender choice: default, owner, sender:<id> or custom."""
    choice = str(data.get("sender", "custom") or "custom")
    reply_to = str(data.get("reply_to", "") or "").strip()
    reply_to = normalize_email(reply_to, own_address=True) if reply_to else ""
    if choice == "default":
        return "", "", reply_to
    if choice == FROM_OWNER:
        return "", FROM_OWNER, reply_to
    if choice.startswith("sender:"):
        sender_id = choice.removeprefix("sender:")
        sender = session.get(Sender, ident) if (ident := parse_id(sender_id)) is not None else None
        if sender is None:
            raise ValidationError("that sender identity no longer exists; choose another", field="sender")
        return sender.name, sender.email, reply_to or (sender.reply_to or "")
    from_name = str(data.get("from_name", "") or "").strip()
    if len(from_name) > 200:
        raise ValidationError("the from name is longer than 200 characters", field="from_name")
    from_email = str(data.get("from_email", "") or "").strip()
    from_email = normalize_email(from_email, own_address=True) if from_email else ""
    return from_name, from_email, reply_to


def sender_choice(campaign: Campaign | None, senders: Iterable[Sender]) -> str:
    """The form's sender choice that produced a campaign's from fields."""
    if campaign is None or (not campaign.from_email and not campaign.from_name):
        return "default"
    if campaign.from_email == FROM_OWNER:
        return FROM_OWNER
    for sender in senders:
        if sender.email == campaign.from_email and sender.name == campaign.from_name:
            return f"sender:{sender.id}"
    return "custom"


def owner_senders(session: Session, campaign: Campaign) -> list[Sender]:
    """The account owners a campaign in owner mode may send as (the sender table is small)."""
    if campaign.from_email != FROM_OWNER:
        return []
    return list(session.scalars(select(Sender).order_by(Sender.id)))


def postal_address(session: Session, settings: Settings) -> str:
    """The sender's postal address every footer shows (Settings → Postal address, else POSTAL_ADDRESS)."""
    return configured_postal_address(session, settings)


def sender_context(name: str, email: str, postal: str, title: str = "") -> dict[str, str]:
    """The `sender` variable templates see."""
    return {"name": name, "email": email, "postal_address": postal, "title": title}


def preview_sender(session: Session, settings: Settings, data: Mapping[str, Any],
                   contact: Contact | None) -> dict[str, str]:
    """The `sender` of an unsaved campaign as `contact` would see it (their owner, in owner mode)."""
    name, email, _reply_to = _sender_fields(session, data)
    postal = postal_address(session, settings)
    if email == FROM_OWNER:
        owner = contact.owner if contact is not None else None
        if owner is not None:
            return sender_context(owner.name, owner.email, postal, owner.title or "")
        name, email = "", ""
    return sender_context(name or settings.sender_name, email or settings.sender_email, postal)


# ---------------------------------------------------------------- compliance

SAMPLE_CONTACT = sample.SAMPLE_CONTACT
_UNSUBSCRIBE_PROBE = "https://unsubscribe.invalid/rapport-check"


def sample_extras(session: Session, choices: Mapping[str, Any], base_url: str, tokens: TokenCodec) -> dict[str, Any]:
    """Per-recipient template values besides contact and sender, as a test message gets them: what every
    contributor adds for a sample recipient (a sample coupon, the survey's links recording nothing) of a campaign
    with these contributed attributes (contributions.attributes_of). For previews and the compliance check."""
    return sample.attachments(session, choices, base_url=base_url, tokens=tokens).extras


def check_compliance(kind: str, result: CompiledCampaign, sender: Mapping[str, str],
                     extras: Mapping[str, Any] | None = None) -> None:
    """Marketing mail must show the postal address and a working unsubscribe link; raises TemplateError.

    Checked on a rendered message, so a footer hidden behind a condition does not count.
    """
    if kind != CampaignKind.MARKETING:
        return
    postal = (sender.get("postal_address") or "").strip()
    if not postal:
        raise TemplateError("marketing mail needs the sender's postal address: set it in Settings "
                            "(POSTAL_ADDRESS) before sending")
    rendered = result.render({**(extras or {}), "contact": SAMPLE_CONTACT, "sender": sender,
                              "unsubscribe_url": _UNSUBSCRIBE_PROBE, "preferences_url": "https://preferences.invalid/"},
                             lambda i: result.links[i], "")
    if f'href="{_UNSUBSCRIBE_PROBE}"' not in rendered.html:
        raise TemplateError("marketing mail needs an unsubscribe link: add <a href=\"{{ unsubscribe_url }}\">"
                            "Unsubscribe</a> to your footer, or remove your footer and Rapport adds one")
    if str(escape(postal)) not in rendered.html and postal not in rendered.html:
        raise TemplateError("marketing mail must show the postal address: add {{ sender.postal_address }} to your "
                            "footer, or remove your footer and Rapport adds one")
