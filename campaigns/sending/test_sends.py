"""Test sends: a campaign (or one of its A/B variants) sent now to up to 10 addresses, marked [Test], personalised as
a chosen contact or a blank sample; their tracking links work but record nothing (send id 0)."""

from __future__ import annotations

from collections.abc import Sequence

from campaigns.composing import editor as campaign_service
from campaigns.contacts.records import normalize_email, personalization
from campaigns.errors import ValidationError
from campaigns.models import Contact, variant_letter
from campaigns.runtime import Runtime
from campaigns.sending.delivery import CampaignMailer
from mailer.transport import DeliveryError


def send_test(rt: Runtime, campaign_id: int, addresses: Sequence[str], as_contact_id: int | None = None,
              variant: int | None = None) -> list[str]:
    """Send the campaign now to up to 10 addresses, personalized as contact as_contact_id (or a sample), in A/B
    variant `variant` (None: A); returns addresses. Opens its own session: the link table is committed before
    anything talks to the relay."""
    emails = [normalize_email(a) for a in addresses if a.strip()]
    if not emails:
        raise ValidationError("enter at least one address", field="addresses")
    if len(emails) > 10:
        raise ValidationError("a test goes to at most 10 addresses", field="addresses")
    with rt.session_factory() as session:
        campaign = campaign_service.get_campaign(session, campaign_id)
        as_contact = session.get(Contact, as_contact_id) if as_contact_id is not None else None
        result = campaign_service.validate(campaign)
        campaign_service.ensure_links(session, campaign, result)
        session.commit()
        mailer = CampaignMailer.for_campaign(rt, session, campaign)
        if variant and variant not in mailer.variants:
            raise ValidationError(f"this campaign has no A/B variant {variant_letter(variant)}", field="variant")
        variables_of = personalization(as_contact, [i.interest for i in as_contact.interests]) if as_contact else None
        session.commit()    # no transaction held while talking to the relay
    pool = rt.relays.pool(mailer.relay or None)
    for email in emails:
        if as_contact is not None:
            name, cid = as_contact.full_name, as_contact.id
            variables = variables_of
        else:
            name, cid = "", 0
            variables = {"email": email, "first_name": "", "last_name": "", "full_name": ""}
        # send id 0: tracking links of a test message work but record nothing.
        envelope_from, data = mailer.message(0, cid, name, email, variables, subject_prefix="[Test] ",
                                             variant=variant or 0,
                                             owner_id=as_contact.owner_id if as_contact is not None else None)
        try:
            pool.send(envelope_from, [email], data)
        except DeliveryError as exc:
            raise ValidationError(f"the mail server refused the test to {email}: {exc}") from None
    return emails
