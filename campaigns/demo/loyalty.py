"""Demo loyalty programme: Member, Silver and Gold tiers computed from the seeded orders, a coupon pool only Gold
customers can get codes from, and a "reached a new tier" thank-you automation (switched off) with its template; and
a yearly "Is this still right?" mail (switched off) that asks customers to check their details."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select

from campaigns.composing import starters
from campaigns.config import Settings
from campaigns.models import (
    Automation,
    AutomationStep,
    AutomationTrigger,
    Campaign,
    CampaignKind,
    Contact,
    CouponCode,
    CouponPool,
)
from campaigns.orders import tiers

TIERS = (("Member", "1", "0", "1", "0"), ("Silver", "2", "150", "1", "365"), ("Gold", "3", "400", "3", "365"))
THANKS = """<mjml><mj-body background-color="#f3f4f6"><mj-section background-color="#ffffff" padding="32px 24px">
<mj-column>
<mj-text font-size="24px" font-weight="700">Welcome to {{ contact.tier }},
{{ contact.first_name|default("friend", true) }}!</mj-text>
<mj-text>Thank you for shopping with us so often. As a {{ contact.tier }} customer you now get early access to our
seasonal plants and a free soil test at the counter.</mj-text>
<mj-text>{{ sender.name }}</mj-text>
</mj-column></mj-section></mj-body></mjml>"""
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def seed_loyalty(session, settings: Settings) -> None:
    """Tiers, everyone's tier from their orders, the Gold-only pool and the thank-you automation. Flushes."""
    for name, rank, value, orders, days in TIERS:
        tiers.save_tier(session, {"name": name, "rank": rank, "min_value": value, "min_orders": orders,
                                  "period_days": days})
    ids = list(session.scalars(select(Contact.id).order_by(Contact.id)))
    for start in range(0, len(ids), tiers.CHUNK):
        tiers.recompute(session, ids[start:start + tiers.CHUNK], reason="demo")
    pool = CouponPool(name="Gold customers 20%", value_description="20% off one order, for Gold customers",
                      expires_on=dt.date.today() + dt.timedelta(days=180), tiers=["Gold"])
    session.add(pool)
    session.flush()
    codes = {"GOLD-" + "".join(secrets.choice(ALPHABET) for _ in range(8)) for _ in range(100)}
    session.add_all(CouponCode(pool_id=pool.id, code=code) for code in sorted(codes))
    thanks = Campaign(name="New tier thank-you (automation template)", kind=CampaignKind.NURTURE,
                      subject="Welcome to {{ contact.tier }}, {{ contact.first_name|default('friend', true) }}",
                      preheader="A thank-you for being a loyal customer", from_name=settings.sender_name,
                      from_email=settings.sender_email, all_contacts=True, mjml=THANKS)
    session.add(thanks)
    session.flush()
    session.add(Automation(name="Reached a new tier", trigger=AutomationTrigger.TIER, active=False,
                           steps=[AutomationStep(position=0, delay_days=0, template_id=thanks.id)]))
    check = starters.starter("details")
    still_right = Campaign(name="Is this still right? (automation template)", kind=CampaignKind.NURTURE,
                           subject=check.subject, preheader=check.preheader, from_name=settings.sender_name,
                           from_email=settings.sender_email, all_contacts=True, mjml=check.mjml)
    session.add(still_right)
    session.flush()
    session.add(Automation(name="Is this still right? (every March)", trigger=AutomationTrigger.YEARLY, month=3,
                           day=1, send_minute=10 * 60, active=False,
                           steps=[AutomationStep(position=0, delay_days=0, template_id=still_right.id)]))
    session.flush()
