"""Jobs that read what a transaction wrote are enqueued after its commit, never after a rollback."""

from __future__ import annotations

from campaigns.models import Campaign, CampaignStatus
from campaigns.sending import lifecycle as sending
from campaigns.sending.committed import when_committed


def test_work_runs_once_after_the_commit_and_never_after_a_rollback(db_session) -> None:
    ran: list[str] = []
    when_committed(db_session, lambda: ran.append("dropped"))
    db_session.rollback()
    db_session.commit()
    assert ran == []
    when_committed(db_session, lambda: ran.append("committed"))
    assert ran == []
    db_session.commit()
    db_session.commit()
    assert ran == ["committed"]


def test_start_enqueues_its_dispatch_only_once_the_caller_commits(runtime, db_session, make_contacts,
                                                                  make_campaign) -> None:
    topic, _contacts = make_contacts(2)
    campaign = make_campaign([topic])
    runtime.queue.empty()
    sending.start(db_session, runtime, campaign)
    assert runtime.queue.count == 0          # nothing is enqueued for rows not stored yet
    db_session.rollback()
    assert runtime.queue.count == 0 and db_session.get(Campaign, campaign.id).status == CampaignStatus.DRAFT
    sending.start(db_session, runtime, db_session.get(Campaign, campaign.id))
    db_session.commit()
    assert runtime.queue.count == 1
