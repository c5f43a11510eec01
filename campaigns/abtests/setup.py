"""Setting up a campaign's A/B test from the admin form: the test share, the criterion, the wait, automatic sending,
the default variant, and variants B-D (each field left empty is the campaign's own, A)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from campaigns.addresses import normalize_email
from campaigns.composing import editor as campaign_service
from campaigns.errors import InvalidState, ValidationError
from campaigns.models import (
    MAX_VARIANTS,
    AbCriterion,
    AbTest,
    AbVariant,
    Campaign,
    CampaignStatus,
    Link,
    variant_letter,
)
from campaigns.sending import variants

SETUP_STATUSES = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
FIELDS = ("subject", "preheader", "from_name", "from_email", "mjml")
LIMITS = {"subject": 998, "preheader": 500, "from_name": 200}
MIN_PERCENT, MAX_PERCENT = 2, 90
MAX_WAIT_HOURS = 30 * 24


def _number(data: Mapping[str, Any], key: str, label: str, lo: float, hi: float, default: float) -> float:
    raw = str(data.get(key, "") or "").strip().replace(",", ".")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError(f"{label}: enter a number", field=key) from None
    if not lo <= value <= hi:
        raise ValidationError(f"{label}: choose between {lo:g} and {hi:g}", field=key)
    return value


def read_variants(data: Mapping[str, Any]) -> list[dict[str, str]]:
    """Variants B-D as filled in (fields `<name>_<1..3>`); an entirely empty one is left out."""
    out = []
    for position in range(1, MAX_VARIANTS):
        values = {f: campaign_service.form_text(data.get(f"{f}_{position}")).strip() for f in FIELDS}
        if not any(values.values()):
            continue
        letter = variant_letter(len(out) + 1)
        for f, limit in LIMITS.items():
            if len(values[f]) > limit:
                raise ValidationError(f"variant {letter}: the {f.replace('_', ' ')} is longer than {limit} characters",
                                      field=f"{f}_{position}")
        if len(values["mjml"]) > campaign_service.MAX_SOURCE_CHARS:
            raise ValidationError(f"variant {letter}: the content is too long", field=f"mjml_{position}")
        if values["from_email"]:
            values["from_email"] = normalize_email(values["from_email"], own_address=True)
        elif values["from_name"]:
            raise ValidationError(f"variant {letter}: a sender name needs its address too",
                                  field=f"from_email_{position}")
        out.append(values)
    return out


def save(session: Session, campaign: Campaign, data: Mapping[str, Any]) -> AbTest:
    """Create or replace the campaign's A/B test from form data; every variant is compiled and checked like the
    campaign itself. Flushes; the caller commits (or rolls back on ValidationError)."""
    if campaign.status not in SETUP_STATUSES:
        raise InvalidState(f"the A/B test of a {campaign.status} campaign can no longer be changed")
    if campaign.recipients_listed:
        raise InvalidState("a campaign mailed to a fixed list (an automation's, a digest) has no A/B test")
    if campaign.local_time:
        raise ValidationError("this campaign goes out in each reader's local time, and an A/B test sends its test "
                              "share at once: choose \"all at once\" under Delivery time first", field="test_percent")
    found = read_variants(data)
    if not found:
        raise ValidationError("fill in at least variant B: a different subject, preheader, sender or content",
                              field="subject_1")
    criterion = str(data.get("criterion", AbCriterion.HUMAN_CLICKS))
    if criterion not in AbCriterion.__members__.values():
        raise ValidationError(f"unknown criterion {criterion!r}", field="criterion")
    if criterion == AbCriterion.COUPON_REDEMPTIONS and not campaign.coupon_pool_id:
        raise ValidationError("coupon redemptions can only judge a campaign that hands out coupons: choose a coupon "
                              "pool in the editor first", field="criterion")
    percent = int(_number(data, "test_percent", "test share (%)", MIN_PERCENT, MAX_PERCENT, 20))
    hours = _number(data, "wait_hours", "decide after (hours)", 0.25, MAX_WAIT_HOURS, 4)
    default = int(_number(data, "default_variant", "default variant", 0, len(found), 0))
    test = variants.test_of(session, campaign.id) or AbTest(campaign_id=campaign.id)
    test.test_percent = percent
    test.criterion = AbCriterion(criterion)
    test.wait_minutes = round(hours * 60)
    test.auto_send = bool(data.get("auto_send"))
    test.default_variant = default
    session.add(test)
    if test.variants:   # the old rows go first: (test, position) is unique
        test.variants.clear()
        session.flush()
    test.variants = [AbVariant(position=i + 1, **values) for i, values in enumerate(found)]
    session.flush()
    # Stored now (a POST), so the campaign page's previews (GET) find the variants' link tables and write nothing.
    variants.check(session, campaign, store_links=True)
    _drop_links(session, campaign, variants.variant_count(test))
    return test


def _drop_links(session: Session, campaign: Campaign, keep: int) -> None:
    """Forget the link tables of variants that no longer exist (a draft has no clicks on them)."""
    session.execute(delete(Link).where(Link.campaign_id == campaign.id,
                                       Link.position >= keep * campaign_service.LINK_STRIDE))


def remove(session: Session, campaign: Campaign) -> bool:
    """Drop the campaign's A/B test before it starts; the caller commits."""
    if campaign.status not in SETUP_STATUSES:
        raise InvalidState(f"the A/B test of a {campaign.status} campaign can no longer be removed")
    test = variants.test_of(session, campaign.id)
    if test is None:
        return False
    session.delete(test)
    _drop_links(session, campaign, 1)
    session.flush()
    return True
