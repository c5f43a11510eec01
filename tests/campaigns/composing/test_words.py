"""Pages speak words, not stored values: frequencies, preference changes, hold reasons, counts, subjects."""

from __future__ import annotations

from campaigns.contacts.records import describe_event
from campaigns.models import Event, EventType, Frequency
from tests.campaigns.web.test_admin import admin_user, logged_in  # noqa: F401 - fixtures


def test_a_preference_change_reads_as_a_sentence() -> None:
    event = Event(type=EventType.PREFERENCES, machine=False,
                  data={"source": "preference center", "frequency": ["every", "weekly"], "topics_on": ["Tips"],
                        "topics_off": ["News", "Offers"], "paused_until": "2026-12-30T10:00:00+00:00"})
    text = describe_event(event)
    assert text == ("via preference center · mail frequency: every mail → a weekly digest · now receives Tips · "
                    "no longer receives News, Offers · paused until 2026-12-30")
    assert "[" not in describe_event(Event(type=EventType.UNSUBSCRIBE, machine=False,
                                           data={"topics": ["News", "Tips"], "source": "one-click"}))


def test_contact_campaign_and_report_pages_show_words(logged_in, db_session, make_contacts,  # noqa: F811
                                                      make_campaign) -> None:
    topic, contacts = make_contacts(2)
    contacts[0].frequency = Frequency.WEEKLY
    db_session.commit()
    page = logged_in.get(f"/admin/contacts/{contacts[0].id}").get_data(as_text=True)
    assert "Mail frequency: a weekly digest" in page and "Mail frequency: weekly" not in page
    campaign = make_campaign([topic])
    page = logged_in.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    summary = page.split('<dl class="summary">')[1].split("</dl>")[0]
    assert f"Hi {contacts[0].first_name}, our news" in summary and "{{" not in summary
    report = logged_in.get(f"/admin/campaigns/{campaign.id}/report").get_data(as_text=True)
    assert "(0 people)" in report and "(1 people)" not in report
