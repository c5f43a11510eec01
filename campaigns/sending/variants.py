"""A/B test variants in the send path: who is in the test share and which variant they get, the send rows of the
test share, and each variant's compiled message (subject, preheader, sender, content).

Assignment is stable per contact: one 64-bit BLAKE2b hash of "campaign id:contact id" gives a number u in [0, 1);
the contact is in the test share when u < share, and gets variant floor(u / share * n) of n, so the share is split
evenly and the same contact always gets the same variant of the same campaign (a resumed dispatch, a retry), while
another campaign draws afresh. Deciding the winner is campaigns.abtests (above sending); this module only reads the
test's phase and winner.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from campaigns.accounts import alignment
from campaigns.addresses import normalize_email
from campaigns.composing import editor as campaign_service
from campaigns.composing import sample
from campaigns.config import Settings
from campaigns.errors import ValidationError
from campaigns.models import AbPhase, AbTest, AbVariant, Campaign, Contact, Send, SendStatus, utcnow, variant_letter
from mailer.compose import CampaignSource, CompiledCampaign, TemplateError
from mailer.message import MessageTemplate

_SCALE = float(2**64)


def draw(campaign_id: int, contact_id: int) -> float:
    """The contact's stable random number in [0, 1) for this campaign."""
    digest = hashlib.blake2b(f"{campaign_id}:{contact_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def assign(campaign_id: int, contact_id: int, percent: int, variants: int) -> int | None:
    """The variant (0 = A) a contact gets in the test share, None when they wait for the winner."""
    share = percent / 100
    u = draw(campaign_id, contact_id)
    if u >= share:
        return None
    return min(int(u / share * variants), variants - 1)


def test_of(session: Session, campaign_id: int) -> AbTest | None:
    """The campaign's A/B test, if it has one."""
    return session.scalar(select(AbTest).where(AbTest.campaign_id == campaign_id))


def variant_count(test: AbTest) -> int:
    return 1 + len(test.variants)


def rest_variant(test: AbTest | None) -> int | None:
    """The variant new send rows get: the winner once the rest goes, None without a test."""
    if test is None:
        return None
    return test.winner if test.phase == AbPhase.REST else None


def insert_test_share(session: Session, campaign_id: int, test: AbTest, ids: list[int]) -> int:
    """Send rows (with their variant) for the contacts of `ids` who are in the test share; returns new rows.
    ON CONFLICT DO NOTHING: a resumed dispatch adds nobody twice. The caller commits."""
    n = variant_count(test)
    now = utcnow()
    rows = [{"campaign_id": campaign_id, "contact_id": cid, "status": SendStatus.QUEUED.value, "attempts": 0,
             "last_error": "", "created_at": now, "variant": v}
            for cid in ids if (v := assign(campaign_id, cid, test.test_percent, n)) is not None]
    if not rows:
        return 0
    dialect_insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(Send.__table__).on_conflict_do_nothing(index_elements=["campaign_id", "contact_id"])
    inserted = 0
    for i in range(0, len(rows), 1000):
        inserted += len(session.execute(stmt.values(rows[i:i + 1000]).returning(Send.__table__.c.id)).all())
    return inserted


def audience_ids(session: Session, conditions: list, after: int, upto: int) -> list[int]:
    """Contact ids of a dispatch chunk (after < id <= upto) matching the audience conditions."""
    return list(session.scalars(select(Contact.id).where(Contact.id > after, Contact.id <= upto, *conditions)
                                .order_by(Contact.id)))


# ---------------------------------------------------------------- variants' messages

def source(campaign: Campaign, variant: AbVariant | None) -> CampaignSource:
    """The compiled form's source of a variant (None: A, the campaign itself); its empty fields are A's."""
    base = campaign_service.source_of(campaign)
    if variant is None:
        return base
    return dataclasses.replace(base, subject=variant.subject or base.subject,
                               preheader=variant.preheader or base.preheader, mjml=variant.mjml or base.mjml)


def variant_at(session: Session, campaign_id: int, position: int) -> AbVariant | None:
    """Variant `position` (1-3) of the campaign's test; None for A or when there is no such variant."""
    test = test_of(session, campaign_id) if position else None
    return next((v for v in test.variants if v.position == position), None) if test else None


@dataclass
class VariantMail:
    """What differs in a variant's messages: the compiled content, its link ids, and the From headers when the
    variant has its own sender (None: the campaign's)."""

    compiled: CompiledCampaign
    link_ids: list[int]
    template: MessageTemplate | None = None
    sender: dict[str, str] | None = None


def prepare(session: Session, campaign: Campaign, headers_from: Callable[[str, str, str], MessageTemplate],
            sender_of: Callable[[str, str], dict[str, str]]) -> dict[int, VariantMail]:
    """Variants B-D of a campaign with an A/B test, compiled and with their link tables stored (flushed; the caller
    commits); {} without a test. headers_from(name, email, reply_to) and sender_of(name, email) build the From."""
    test = test_of(session, campaign.id)
    if test is None or not test.variants:
        return {}
    out = {}
    for variant in test.variants:
        result = campaign_service.compile_source(source(campaign, variant))
        base = variant.position * campaign_service.LINK_STRIDE
        ids = campaign_service.link_ids(session, campaign.id, base)
        if len(ids) != len(result.links):
            ids = campaign_service.ensure_links(session, campaign, result, base)
        mail = VariantMail(result, ids)
        if variant.from_email and campaign.from_email != campaign_service.FROM_OWNER:
            name = variant.from_name or campaign.from_name
            mail.template = headers_from(name, variant.from_email, campaign.reply_to)
            mail.sender = sender_of(name, variant.from_email)
        out[variant.position] = mail
    return out


def variants_of_sends(session: Session, send_ids: list[int]) -> dict[int, int]:
    """send id -> variant of those sends that have one."""
    return dict(session.execute(select(Send.id, Send.variant).where(Send.id.in_(send_ids),
                                                                   Send.variant.is_not(None))).all())


def check_senders(session: Session, campaign: Campaign, settings: Settings) -> None:
    """A variant's own From must align with the DKIM domain, unless the campaign allows unaligned senders."""
    test = test_of(session, campaign.id)
    for variant in test.variants if test is not None else ():
        try:
            alignment.check_from(variant.from_email, settings, override=campaign.allow_unaligned_from)
        except ValidationError as exc:
            raise ValidationError(f"variant {variant_letter(variant.position)}: {exc}", field="from_email") from None


def check(session: Session, campaign: Campaign, store_links: bool = False) -> None:
    """Every variant compiles and shows what the campaign needs shown; raises ValidationError naming the variant.
    store_links: also store each variant's link table (when the campaign starts; flushed, the caller commits)."""
    test = test_of(session, campaign.id)
    if test is None:
        return
    for variant in test.variants:
        letter = variant_letter(variant.position)
        if variant.from_email:
            try:
                normalize_email(variant.from_email, own_address=True)
            except ValidationError as exc:
                raise ValidationError(f"variant {letter}: {exc}", field="from_email") from None
        try:
            result = campaign_service.compile_source(source(campaign, variant))
            sample.check(session, campaign, result)
        except (TemplateError, ValidationError) as exc:
            raise ValidationError(f"variant {letter}: {exc}", field="mjml") from None
        if store_links:
            campaign_service.ensure_links(session, campaign, result, variant.position * campaign_service.LINK_STRIDE)


CRITERION_WORDS = {"human_clicks": "people's clicks", "human_opens": "people's opens",
                   "coupon_redemptions": "coupon redemptions", "replies": "people's replies"}


def decision_due(test: AbTest, campaign: Campaign) -> dt.datetime | None:
    """When the test's figures are judged: its wait after the campaign started (None before it started)."""
    return campaign.started_at + dt.timedelta(minutes=test.wait_minutes) if campaign.started_at else None


def waiting(session: Session, campaign: Campaign) -> str:
    """What a running campaign with nothing left to send waits for because of its A/B test ("" for none)."""
    test = test_of(session, campaign.id)
    if test is None or test.phase == AbPhase.REST:
        return ""
    if test.phase == AbPhase.DECIDED:
        return ("The A/B test is decided and waits for you: choose on the A/B test page which variant the rest "
                "of the audience gets.")
    due = decision_due(test, campaign)
    words = CRITERION_WORDS.get(str(test.criterion), str(test.criterion))
    return (f"The A/B test share has been sent. The winner is chosen by {words}"
            + (f" at {due:%Y-%m-%d %H:%M} UTC" if due else "")
            + (" and then sent to the rest of the audience." if test.auto_send
               else "; you then choose what the rest of the audience gets."))
