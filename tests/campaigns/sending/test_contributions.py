"""A feature adds to messages through a contributor alone: registered here, it reaches real sent messages (and
holds sends back) with no change to the send path, and is gone again once unregistered."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import select

from campaigns.composing import contributions
from campaigns.composing.contributions import Contributor, Hold, Recipient, SampleContribution
from campaigns.errors import ValidationError
from campaigns.models import Campaign, CampaignStatus, Send, SendStatus
from campaigns.sending import lifecycle as sending

LOYALTY_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}, you have {{ loyalty.points }} points.</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


class Loyalty(Contributor):
    """Points per contact (ten per contact id), and no mail to the contacts listed in `skip`."""

    name = "loyalty-test"
    order = 30

    def __init__(self, skip: frozenset[int] = frozenset()) -> None:
        self.skip = skip

    def sample(self, session: Any, choices: Mapping[str, Any], *, base_url: str,
               tokens: Any) -> SampleContribution:
        return SampleContribution({"loyalty": {"points": 0}})

    def prepare(self, rt: Any, session: Any, campaign: Campaign) -> dict[str, int]:
        return {"factor": 10}

    def hold(self, session: Any, state: dict, recipients: Sequence[tuple[int, int]]) -> Hold | None:
        held = [sid for sid, cid in recipients if cid in self.skip]
        return Hold(held, "the loyalty programme is closed for some recipients") if held else None

    def variables(self, state: dict, recipient: Recipient) -> dict[str, Any]:
        return {"loyalty": {"points": recipient.contact_id * state["factor"]}}


@pytest.fixture()
def register() -> Iterator[Any]:
    """Register a contributor for one test, and take it away afterwards whatever happens."""
    registered: list[str] = []

    def add(contributor: Contributor) -> Contributor:
        registered.append(contributor.name)
        return contributions.register(contributor)

    yield add
    for name in registered:
        contributions.unregister(name)
    assert all(c.name != Loyalty.name for c in contributions.contributors())


def test_a_registered_contributor_adds_a_variable_to_every_sent_message(
        runtime, db_session, make_contacts, make_campaign, outbox, run_worker, register) -> None:
    register(Loyalty())
    topic, contacts = make_contacts(3)
    campaign = make_campaign([topic], mjml=LOYALTY_MJML)
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()

    got = {m.recipients[0]: m for m in (outbox.get(e.key) for e in outbox.list(limit=100))}
    assert set(got) == {c.email for c in contacts}
    for contact in contacts:
        assert f"you have {contact.id * 10} points" in got[contact.email].html


def test_a_contributor_holds_sends_back_and_the_campaign_pauses_with_its_reason(
        runtime, db_session, make_contacts, make_campaign, outbox, run_worker, register) -> None:
    topic, contacts = make_contacts(3)
    skipped = contacts[1]
    register(Loyalty(frozenset({skipped.id})))
    campaign = make_campaign([topic], mjml=LOYALTY_MJML)
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()

    sent_to = {outbox.get(e.key).recipients[0] for e in outbox.list(limit=100)}
    assert skipped.email not in sent_to
    db_session.rollback()
    db_session.expire_all()
    done = db_session.get(Campaign, campaign.id)
    assert done.status == CampaignStatus.PAUSED
    assert done.status_reason == "the loyalty programme is closed for some recipients"
    row = db_session.scalar(select(Send).where(Send.campaign_id == campaign.id, Send.contact_id == skipped.id))
    assert row.status == SendStatus.QUEUED and row.attempts == 0
    assert row.last_error == "the loyalty programme is closed for some recipients"


def test_without_the_contributor_its_variable_is_unknown(runtime, db_session, make_campaign, make_contacts) -> None:
    """The sample check catches a campaign using a variable no registered contributor provides."""
    topic, _contacts = make_contacts(1)
    campaign = make_campaign([topic], mjml=LOYALTY_MJML)
    with pytest.raises(ValidationError, match="sample contact"):
        sending.start(db_session, runtime, campaign)
