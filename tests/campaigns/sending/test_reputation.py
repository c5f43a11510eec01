"""Auto-pause on reputation risk (issue 17 item 20): real worker, a relay that refuses some addresses."""

from __future__ import annotations

from campaigns.models import Campaign, CampaignStatus
from campaigns.sending import lifecycle as sending
from tests.campaigns.sending.test_delivery import scripted  # noqa: F401 - fixture
from tests.helpers import fresh


def test_a_campaign_whose_first_sends_bounce_hard_is_paused_with_the_reason_once(
        runtime, db_session, make_contacts, make_campaign, scripted, run_worker) -> None:  # noqa: F811
    runtime.settings = runtime.settings.with_overrides({"pause_min_sends": 5, "claim_size": 10})
    topic, contacts = make_contacts(30)
    for c in contacts[:3]:       # 3 of the first 10: 30 % hard bounces, far over 5 %
        scripted.replies[c.email] = "550 5.1.1 No such user here"
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    c = fresh(db_session).get(Campaign, campaign.id)
    assert c.status == CampaignStatus.PAUSED
    assert "bounced hard" in c.status_reason and "3 of the first 7" in c.status_reason
    assert len(scripted.received) == 7           # the rest of the list never went out
    # A person read the reason and goes on: the same rates do not stop it again.
    sending.start(db_session, runtime, c)
    db_session.commit()
    run_worker()
    c = fresh(db_session).get(Campaign, campaign.id)
    assert c.status == CampaignStatus.FINISHED
    assert len(scripted.received) == 27


def test_a_normal_bounce_rate_does_not_pause(runtime, db_session, make_contacts, make_campaign, scripted,  # noqa: F811
                                             run_worker) -> None:
    runtime.settings = runtime.settings.with_overrides({"pause_min_sends": 5, "claim_size": 10})
    topic, contacts = make_contacts(30)
    scripted.replies[contacts[25].email] = "550 5.1.1 No such user here"   # 1 of 30: under 5 % once judged
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    assert fresh(db_session).get(Campaign, campaign.id).status == CampaignStatus.FINISHED
    assert len(scripted.received) == 29
