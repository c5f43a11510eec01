"""Campaigns: create and edit, sender identity, starters, validate and compliance, compile (cached), link table."""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from markupsafe import escape
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, object_session

from campaigns.accounts.alignment import FROM_OWNER
from campaigns.accounts.alignment import from_identity as from_identity  # an account concept, still reached here
from campaigns.addresses import normalize_email
from campaigns.composing import sample
from campaigns.config import Settings
from campaigns.coupons import pools as coupon_service
from campaigns.db import parse_id
from campaigns.errors import InvalidState, NotFound, ValidationError
from campaigns.models import Campaign, CampaignKind, CampaignStatus, Contact, Link, Sender, Topic
from campaigns.resources import starters_dir
from campaigns.surveys import service as survey_service
from mailer.compose import (
    CampaignSource,
    CompiledCampaign,
    TemplateError,
    compile_campaign,
    is_personalised,
    valid_language,
)

logger = logging.getLogger(__name__)

EDITABLE_STATUSES = {CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.PAUSED}
MAX_SOURCE_CHARS = 400_000
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
    src = source_of(campaign)
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
    content = "\n".join(str(data.get(k, "") or "") for k in ("subject", "mjml", "text_body"))
    coupon_pool_id = coupon_service.chosen_pool(session, data, campaign, content)
    survey_id = survey_service.chosen_survey(session, data, campaign, content)
    if campaign is None:
        campaign = Campaign(status=CampaignStatus.DRAFT)
        session.add(campaign)
    campaign.relay = "" if relay == (known_relays[0] if known_relays else "") else relay
    campaign.name = name
    campaign.subject = subject
    campaign.kind = CampaignKind(kind)
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
    campaign.coupon_pool_id, campaign.survey_id = coupon_pool_id, survey_id
    session.flush()
    return campaign


def _segment_id(session: Session, raw: Any) -> int | None:
    """The chosen segment's id ("" = none); a segment that does not exist is refused."""
    from campaigns.models import Segment

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


def ensure_links(session: Session, campaign: Campaign, result: CompiledCampaign) -> list[int]:
    """Store the campaign's link table (position -> id) and return link ids by position."""
    existing = {link.position: link for link in campaign.links}
    for position, url in enumerate(result.links):
        link = existing.get(position)
        if link is None:
            campaign.links.append(Link(position=position, url=url))
        elif link.url != url:
            link.url = url
    for position, link in existing.items():
        if position >= len(result.links):
            campaign.links.remove(link)
    session.flush()
    by_pos = {link.position: link.id for link in campaign.links}
    return [by_pos[i] for i in range(len(result.links))]


def link_ids(session: Session, campaign_id: int) -> list[int]:
    """Link ids of a campaign ordered by position."""
    return list(session.scalars(select(Link.id).where(Link.campaign_id == campaign_id).order_by(Link.position)))


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
    from campaigns.accounts.settings_store import postal_address as configured

    return configured(session, settings)


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


def sample_extras(session: Session, coupon_pool_id: int | None, survey_id: int | None, base_url: str,
                  tokens: Any) -> dict[str, Any]:  # noqa: ANN401 - mailer.tracking.TokenCodec
    """Per-recipient template values besides contact and sender, as a test message gets them: a sample coupon
    (no real code used up) and the survey's links (recording nothing). For previews and the compliance check."""
    return sample.attachments(session, coupon_pool_id, survey_id, base_url=base_url, tokens=tokens).extras


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


# ---------------------------------------------------------------- preview of unsaved content

@dataclass
class Preview:
    """What the composer shows: the HTML (empty when it cannot compile), text part, subject and problems."""

    html: str = ""
    text: str = ""
    subject: str = ""
    errors: list[dict[str, Any]] | None = None
    links: list[dict[str, Any]] | None = None    # every web link: url, tracked, and why when not

    def as_json(self) -> dict[str, Any]:
        return {"ok": not self.errors, "subject": self.subject, "text": self.text, "errors": self.errors or [],
                "links": self.links or []}


def link_report(result: CompiledCampaign) -> list[dict[str, Any]]:
    """Which links of a compiled campaign are click-tracked, in the words the composer shows."""
    out: list[dict[str, Any]] = [
        {"url": url, "tracked": True,
         "note": "tracked, personalised per recipient" if is_personalised(url) else "tracked"}
        for url in result.links]
    for url in result.untracked:
        if url.startswith(("{{", "{%")):
            note = "not tracked: the whole address comes from template code"
        elif is_personalised(url):
            note = "not tracked: template code in the site name (only the path and query may be personalised)"
        else:
            note = "not tracked"
        out.append({"url": url, "tracked": False, "note": note})
    return out


def preview(source: CampaignSource, kind: str, sender: Mapping[str, str], contact_vars: Mapping[str, Any],
            extras: Mapping[str, Any] | None = None, found: sample.SampleAttachments | None = None) -> Preview:
    """Compile unsaved content and render it for one contact; problems come back with their MJML line.

    With found (the chosen pool and survey), content that does not show them is a problem too."""
    out = Preview(errors=[])
    if not source.mjml.strip():
        out.errors.append({"line": None, "message": "the campaign has no content yet"})
        return out
    if len(source.mjml) > MAX_SOURCE_CHARS:
        out.errors.append({"line": None, "message": f"the content is longer than {MAX_SOURCE_CHARS:,} characters"})
        return out
    try:
        result = compile_campaign(source)
    except TemplateError as exc:
        out.errors.append({"line": exc.line, "message": exc.message})
        return out
    try:
        check_compliance(kind, result, sender, extras)
    except TemplateError as exc:
        out.errors.append({"line": None, "message": exc.message})
    ctx = {**(extras or {}), "contact": contact_vars, "sender": sender, "unsubscribe_url": "#unsubscribe",
           "preferences_url": "#preferences"}
    try:
        rendered = result.render(ctx, lambda i: result.links[i], "")
    except TemplateError as exc:
        # exc.line is the editor line when the failing code could be found there (mailer.sourcemap).
        out.errors.append({"line": exc.line, "message": f"while personalizing for {contact_vars.get('email')}: "
                                                        f"{exc.message}"})
        return out
    out.html, out.text, out.subject = rendered.html, rendered.text, rendered.subject
    if found is not None:
        out.errors.extend({"line": None, "message": m} for m in found.problems(rendered,
                                                                              own_text=bool(source.text_body.strip())))
    out.links = link_report(result)
    return out


def find_contacts(session: Session, query: str, limit: int = 10) -> list[Contact]:
    """Contacts whose address or name starts with query (the composer's 'preview as' picker)."""
    q = query.strip().lower()[:100]
    if not q:
        return list(session.scalars(select(Contact).order_by(Contact.id).limit(limit)))
    pattern = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(session.scalars(select(Contact).where(or_(
        Contact.email.like(pattern, escape="\\"),
        func.lower(Contact.first_name).like(pattern, escape="\\"),
        func.lower(Contact.last_name).like(pattern, escape="\\"))).order_by(Contact.email).limit(limit)))


def contact_by_email_or_id(session: Session, value: str) -> Contact | None:
    """The contact a picker names, by id or (case-insensitive) address; None when there is none."""
    value = value.strip()
    if value.isdigit():
        return session.get(Contact, int(value))
    if "@" in value:
        return session.scalar(select(Contact).where(Contact.email == value.lower()))
    return None


# ---------------------------------------------------------------- starter templates

STARTER_DIR = starters_dir()
BLANK_MJML = """<mjml>
  <mj-head>
    <mj-attributes>
      <mj-all font-family="Helvetica, Arial, sans-serif" />
      <mj-text font-size="16px" line-height="24px" color="#1f2937" />
    </mj-attributes>
  </mj-head>
  <mj-body background-color="#f3f4f6">
    <mj-section background-color="#ffffff" padding="32px 24px">
      <mj-column>
        <mj-text font-size="24px" font-weight="700">Hello {{ contact.first_name|default("there", true) }},</mj-text>
        <mj-text>Write your message here.</mj-text>
        <mj-text>{{ sender.name }}</mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""


@dataclass(frozen=True)
class Starter:
    """A starting point for a new campaign."""

    key: str
    title: str
    description: str
    kind: str
    subject: str
    preheader: str = ""

    @property
    def mjml(self) -> str:
        if self.key == "blank":
            return BLANK_MJML
        return (STARTER_DIR / f"{self.key}.mjml").read_text(encoding="utf-8")


_STARTERS = (
    Starter("blank", "Blank", "A plain, single-column layout to write from scratch.", "nurture", ""),
    Starter("newsletter", "Newsletter", "Monthly notes: a hero, three short articles and an event.", "nurture",
            "{{ contact.first_name|default('Hello', true) }}, what's new this month",
            "What to sow now, a soil test and a workshop"),
    Starter("coupon", "Coupon", "A thank-you with each recipient's own code from a coupon pool (choose the pool "
            "below) and one clear button.", "marketing", "A thank-you: {{ coupon.value }}",
            "Your personal code, valid until {{ coupon.expires }}"),
    Starter("event", "Event invitation", "Date, place, agenda and a reply button; calendar-friendly details.",
            "nurture", "{{ contact.first_name|default('Friend', true) }}, you're invited: a spring planting evening",
            "Thursday 18:30 in the shop, free, places limited"),
    Starter("survey", "Survey", "The first question of a survey (choose it below), answered with a single click; "
            "the page it opens has the rest.", "nurture",
            "Quick question, {{ contact.first_name|default('friend', true) }}: how are we doing?",
            "One click, no form"),
    Starter("holiday", "Holiday greeting", "Warm seasonal wishes from the team, opening hours, no selling.",
            "nurture", "Season's greetings from all of us", "Thank you for a wonderful year"),
    Starter("birthday", "Birthday greeting", "A warm birthday note with a small present code (for a birthday "
            "automation; draws a coupon pool).", "nurture",
            "Happy birthday, {{ contact.first_name|default('friend', true) }}!", "A small present from all of us"),
)
# Starters used by one feature only, not offered in the composer's chooser (the personal apology mail, the digest).
_FEATURE_STARTERS = frozenset({"apology", "digest"})


def starters() -> list[Starter]:
    """The starter templates: the known ones in order, then any other .mjml file in campaigns/starters/."""
    known = [s for s in _STARTERS if s.key == "blank" or (STARTER_DIR / f"{s.key}.mjml").exists()]
    keys = {s.key for s in known}
    for path in sorted(STARTER_DIR.glob("*.mjml")):
        if path.stem not in keys and path.stem not in _FEATURE_STARTERS:
            known.append(Starter(path.stem, path.stem.replace("_", " ").replace("-", " ").capitalize(), "",
                                 "nurture", ""))
    return known


def starter(key: str) -> Starter | None:
    """One starter by key, or None."""
    return next((s for s in starters() if s.key == key), None)
