"""Contacts with and without postal addresses, and a post campaign for them."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.contacts.records import save_contact
from campaigns.models import Topic

LETTER_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Dear {{ contact.first_name }}, thank you for gardening with us in {{ contact.city }}.</mj-text>
<mj-text>Warm regards, {{ sender.name }}</mj-text>
</mj-column></mj-section></mj-body></mjml>"""

BERLIN = {"address_line1": "Lindenstraße 5", "postal_code": "10115", "city": "Berlin", "country": "DE"}


@pytest.fixture()
def post_audience(db_session):
    """A topic and contacts by name: who should get a letter and who not, and why."""
    topic = Topic(name="Garden club")
    db_session.add(topic)
    db_session.flush()

    def add(key: str, **fields: object):
        return save_contact(db_session, {"email": f"{key}@example.com", "first_name": key.title(),
                                         "last_name": "Gärtner", **fields}, topic_ids=[topic.id])

    people = {
        "anna": add("anna", **BERLIN),
        "oguz": add("oguz", **{**BERLIN, "address_line1": "Oranienstraße 12", "postal_code": "10999"}),
        "gwen": add("gwen", address_line1="12 Elm Street", city="Springfield", region="IL", postal_code="62701",
                    country="US"),
        "nocode": add("nocode", **{**BERLIN, "postal_code": ""}),
        "nostate": add("nostate", address_line1="1 Main St", city="Austin", postal_code="73301", country="US"),
        "nopost": add("nopost", **BERLIN),
        "paused": add("paused", **BERLIN),
        "gone": add("gone", **BERLIN),
    }
    people["paused"].paused_until = dt.datetime.now(dt.UTC) + dt.timedelta(days=20)
    people["gone"].status = "unsubscribed"
    db_session.commit()
    return topic, people


COUPON_TEXT = "<mj-text>Your code {{ coupon.code }} gives you {{ coupon.value }}.</mj-text>\n"


@pytest.fixture()
def post_campaign(db_session):
    """A draft nurture campaign for the topic, with a coupon when given a pool."""
    from campaigns.composing.editor import save_campaign

    def make(topic, coupon_pool_id: int | None = None):
        mjml = LETTER_MJML if coupon_pool_id is None else \
            LETTER_MJML.replace("<mj-text>Warm", COUPON_TEXT + "<mj-text>Warm")
        campaign = save_campaign(db_session, {"name": "Thank-you letter", "kind": "nurture", "mjml": mjml,
                                              "subject": "A note for you, {{ contact.first_name }}",
                                              "from_name": "Anna Becker", "coupon_pool_id": coupon_pool_id or ""},
                                 topic_ids=[topic.id])
        db_session.commit()
        return campaign

    return make
