"""Entering from the draw's public page: a subscriber gives their address and gets a personal entry link by mail.

The page never says whether an address is on the list: every valid post gets the same answer, and the work (finding
the contact, checking eligibility, sending) happens in the `draw_entry_link` job. Posts are rate limited per IP and
per address (the sign-up limits, campaigns.signup.confirmation.admit). The mail is the draw's one transactional
"entry link" campaign, sent through the normal path (DKIM, suppression); each contact gets it at most once per draw
(its send rows are unique per contact). Its link is the one-click entry link with via = page: the entry is still
confirmed by POST on the page it opens.
"""

from __future__ import annotations

import logging

from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import queueing
from campaigns.addresses import normalize_email
from campaigns.composing import editor as campaign_service
from campaigns.coupons.apology import literal
from campaigns.draws import service as draws
from campaigns.models import Campaign, CampaignKind, Contact, Draw
from campaigns.queueing import Job
from campaigns.runtime import Runtime
from campaigns.sending import lifecycle as sending
from campaigns.signup.confirmation import admit

logger = logging.getLogger(__name__)

LINK_MJML = """<mjml><mj-body background-color="#f4f4f5"><mj-section background-color="#ffffff" padding="24px">
<mj-column>
<mj-text font-size="18px" font-weight="600">Your entry link: <!-- rapport:name --></mj-text>
<mj-text>Hello {{ contact.first_name|default('there', true) }}, you asked to enter our prize draw. The prize:
<!-- rapport:prize --></mj-text>
<mj-button href="{{ draw_url('<!-- rapport:public_id -->') }}" background-color="#1d4ed8">Enter the draw</mj-button>
<mj-text color="#6b7280" font-size="13px">The button opens a page with the rules, where you confirm your entry.
If you did not ask for this, ignore this mail: nobody is entered without pressing the button.</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


def request_link(rt: Runtime, draw: Draw, raw_email: str, ip: str) -> None:
    """Validate the address (ValidationError), count the post against the rate limits (RateLimitExceeded for the
    IP), and hand it to the worker. Reads no contact: the same work for every address."""
    email = normalize_email(raw_email[:320])
    if admit(rt.redis, ip, email):
        queueing.enqueue(rt.queue, Job.DRAW_ENTRY_LINK, draw.id, email)


def _link_campaign(session: Session, draw: Draw, settings) -> int:
    """The draw's entry-link campaign, created the first time (flushed)."""
    if draw.link_campaign_id is not None and session.get(Campaign, draw.link_campaign_id) is not None:
        return draw.link_campaign_id
    mjml = (LINK_MJML.replace("<!-- rapport:name -->", literal(str(escape(draw.name))))
            .replace("<!-- rapport:prize -->", literal(str(escape(draw.prize))))
            .replace("<!-- rapport:public_id -->", draw.public_id))
    campaign = Campaign(name=f"Entry links for {draw.name}"[:200], kind=CampaignKind.TRANSACTIONAL,
                        subject=literal(f"Your entry link: {draw.name}"[:200]), preheader="", text_body="",
                        all_contacts=False, relay="", from_name=settings.sender_name,
                        from_email=settings.sender_email, reply_to="", mjml=mjml,
                        status_reason=f"entry links asked for on the public page of draw {draw.id}")
    campaign_service.validate(campaign, session)
    session.add(campaign)
    session.flush()
    draw.link_campaign_id = campaign.id
    session.flush()
    return campaign.id


def send_link(rt: Runtime, draw_id: int, email: str) -> int:
    """The job: mail the entry link to the contact with this address when they may enter now; 1 if queued."""
    with rt.session_factory() as session:
        draw = session.get(Draw, draw_id)
        if draw is None or draws.state(draw) != "open":
            logger.info("entry link for draw %s not sent: the draw is gone or not open", draw_id)
            return 0
        contact_id = session.scalar(select(Contact.id).where(Contact.email == email))
        if contact_id is None or not draws.eligible(session, draw, contact_id) \
                or draws.entry_of(session, draw.id, contact_id) is not None:
            logger.info("entry link for draw %s not sent: no eligible contact without an entry", draw_id)
            return 0
        campaign_id = _link_campaign(session, draw, rt.settings)
        session.commit()
    return sending.dispatch_to(rt, campaign_id, [contact_id])
