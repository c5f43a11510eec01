"""The preference center's details page: GET/HEAD change nothing, a POST changes the details with a history event
for each, bad input is refused field by field with nothing lost, and the changes count for segments, birthdays and
post at once. The mail footer links there."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from campaigns.contacts import segment_rules, segment_sql
from campaigns.feedback import details as service
from campaigns.models import Contact, ContactInterest, Event, EventType, PostOptOut
from campaigns.post import addresses as post_addresses
from campaigns.sending import lifecycle as sending
from mailer.tracking import Purpose
from tests.helpers import fresh

GOOD = {"address_line1": "Lindenstraße 1", "address_line2": "", "postal_code": "10115", "city": "Berlin",
        "region": "", "country": "DE", "phone": "030 1234567", "birth_day": "29", "birth_month": "2",
        "birth_year": "", "timezone": "Europe/Berlin", "interests": "Roses, vegetables, roses", "no_post": "1"}


@pytest.fixture()
def page(runtime, make_contacts):
    _topic, (contact,) = make_contacts(1)
    return "/p/" + runtime.tokens.seal(Purpose.PREFERENCES, contact.id) + "/details", contact


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def snapshot(db_session, contact_id: int) -> tuple:
    s = fresh(db_session)
    c = s.get(Contact, contact_id)
    state = (c.address_line1, c.city, c.postal_code, c.country, c.phone, c.birthday, c.timezone,
             sorted(i.interest for i in c.interests), s.get(PostOptOut, contact_id) is not None,
             s.scalar(select(func.count()).select_from(Event)))
    s.rollback()
    return state


def test_get_and_head_show_the_form_and_change_nothing(client, db_session, runtime, page) -> None:
    url, contact = page
    before = snapshot(db_session, contact.id)
    r = client.get(url)
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and contact.email in html and 'name="viewport"' in html
    for field in ("address_line1", "postal_code", "city", "region", "country", "phone", "birth_day", "birth_month",
                  "birth_year", "timezone", "interests"):
        assert f'<label for="{field}">' in html and f'id="{field}"' in html, field
    assert "No post, please" in html and '<option value="Europe/Berlin"' in html and ">Germany</option>" in html
    # Query strings and HEAD change nothing either: only a POST does.
    assert client.head(url).status_code == 200
    assert client.get(url, query_string={k: v for k, v in GOOD.items()}).status_code == 200
    assert snapshot(db_session, contact.id) == before
    assert client.get(url.replace("/details", "x/details")).status_code == 404     # a re-spelled token
    assert client.post(url, data=GOOD).status_code == 400                           # no CSRF token
    assert snapshot(db_session, contact.id) == before
    # A test message's link names no contact; an erased contact's link finds nothing.
    assert "test message" in client.get(f"/p/{runtime.tokens.seal(Purpose.PREFERENCES, 0)}/details").get_data(True)
    assert client.get(f"/p/{runtime.tokens.seal(Purpose.PREFERENCES, 10**9)}/details").status_code == 404


def test_post_saves_details_with_history_and_they_count_at_once(client, db_session, page) -> None:
    url, contact = page
    r = client.post(url, data={"csrf_token": csrf_of(client.get(url).get_data(as_text=True)), **GOOD})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "Saved. Thank you." in html
    assert "Your postal address is saved." in html and "You will get no letters or cards by post." in html
    s = fresh(db_session)
    c = s.get(Contact, contact.id)
    assert (c.address_line1, c.postal_code, c.city, c.country) == ("Lindenstraße 1", "10115", "Berlin", "DE")
    assert c.phone == "+49301234567"                       # E.164, read with the chosen country
    assert c.birthday == dt.date(service.NO_YEAR, 2, 29)   # day and month only
    assert c.timezone == "Europe/Berlin"
    assert sorted(i.interest for i in c.interests) == ["roses", "vegetables"]
    assert s.get(PostOptOut, contact.id).source == "preference center"
    events = s.scalars(select(Event).where(Event.contact_id == contact.id, Event.type == EventType.DETAILS)
                       .order_by(Event.id)).all()
    assert [e.data["field"] for e in events] == ["postal address", "phone number", "time zone", "birthday",
                                                 "interests", "post"]
    assert events[0].data["fields"] == ["address_line1", "postal_code", "country"]   # the city was Berlin
    # The changes feed segments, birthdays and post straight away.
    month = segment_rules.parse_definition({"match": "all", "rules": [
        {"field": "birthday_month", "op": "is", "value": 2}, {"field": "interest", "op": "has", "value": "roses"},
        {"field": "timezone", "op": "is", "value": "Europe/Berlin"}]})
    where = segment_sql.compile_definition(month, dialect=s.get_bind().dialect.name)
    assert s.scalars(select(Contact.id).where(where)).all() == [contact.id]
    assert s.scalars(select(Contact.id).where(post_addresses.complete_address())).all() == [contact.id]
    assert s.scalars(select(Contact.id).where(post_addresses.wants_post())).all() == []
    s.rollback()
    # The page shows the saved values, the history has them, and saving again changes nothing.
    again = client.get(url).get_data(as_text=True)
    assert 'value="+49301234567"' in again and 'value="roses, vegetables"' in again and 'value=""' in again
    data = {"csrf_token": csrf_of(again), **GOOD, "phone": "+49301234567"}
    assert "Nothing changed." in client.post(url, data=data).get_data(as_text=True)
    prefs = client.get(url.removesuffix("/details")).get_data(as_text=True)
    assert "details (preference center)" in prefs and "Update your details" in prefs


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"phone": "12"}, "phone", "not a phone number"),
    ({"phone": "030 1234567", "country": ""}, "phone", "Start with +"),
    ({"country": "XX"}, "country", "Choose your country"),
    ({"birth_day": "29", "birth_month": "2", "birth_year": "2023"}, "birthday", "February has no day 29 in 2023"),
    ({"birth_day": "31", "birth_month": "4"}, "birthday", "April has no day 31"),
    ({"birth_day": "3", "birth_month": ""}, "birthday", "Give the day and the month"),
    ({"birth_day": "3", "birth_month": "4", "birth_year": "2999"}, "birthday", "The year of birth is between"),
    ({"timezone": "Mars/Olympus"}, "timezone", "Choose your time zone"),
    ({"postal_code": "1" * 21}, "postal_code", "at most 20 characters"),
    ({"city": "Ber\x00lin"}, "city", "cannot be printed"),
    ({"country": "US", "region": ""}, "region", "state or province"),
    ({"interests": ",".join(f"i{n}" for n in range(21))}, "interests", "at most 20"),
])
def test_bad_input_is_shown_next_to_its_field_and_nothing_is_lost(client, db_session, page, changes, field,
                                                                  message) -> None:
    url, contact = page
    before = snapshot(db_session, contact.id)
    data = {"csrf_token": csrf_of(client.get(url).get_data(as_text=True)), **GOOD, "city": "Potsdam", **changes}
    r = client.post(url, data=data)
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "Traceback" not in html
    error = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', html)
    assert error and message in error.group(1).replace("&#39;", "'"), html[:3000]
    assert 'aria-invalid="true"' in html and "Nothing was saved yet" in html
    if field != "city":                                       # what was typed is still there
        assert 'value="Potsdam"' in html and 'value="Lindenstraße 1"' in html
    assert snapshot(db_session, contact.id) == before


def test_several_problems_are_reported_together(client, db_session, page) -> None:
    url, _contact = page
    data = {"csrf_token": csrf_of(client.get(url).get_data(as_text=True)), **GOOD, "phone": "x",
            "birth_day": "30", "birth_month": "2", "timezone": ""}
    html = client.post(url, data=data).get_data(as_text=True)
    assert 'id="phone-error"' in html and 'id="birthday-error"' in html and 'id="timezone-error"' not in html


def test_the_mail_footer_links_to_the_details_page(client, db_session, runtime, make_contacts, make_campaign,
                                                   outbox, run_worker) -> None:
    topic, (contact,) = make_contacts(1)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    html = outbox.get(outbox.list()[0].key).html
    link = re.search(r'href="https://mail\.shop\.test(/p/[^"]+/details)"[^>]*>Update your details', html)
    assert link, html[-1500:]
    assert "Your details" in client.get(link.group(1)).get_data(as_text=True)


def test_parse_keeps_a_phone_stored_before_the_checks(db_session, make_contacts) -> None:
    _topic, (contact,) = make_contacts(1)
    contact.phone = "0171 555"
    details = service.parse({**GOOD, "phone": "0171 555", "country": ""}, current=contact)
    assert details.phone == "0171 555"
    with pytest.raises(service.DetailsInvalid):
        service.parse({**GOOD, "phone": "0171 556", "country": ""}, current=contact)
    assert db_session.scalar(select(func.count()).select_from(ContactInterest)) == 0


FIELDS = ("address_line1", "address_line2", "postal_code", "city", "region", "country", "phone", "birth_day",
          "birth_month", "birth_year", "timezone", "interests", "no_post")


def test_anything_a_recipient_sends_is_answered_without_a_crash(client, db_session, page) -> None:
    """Arbitrary text (control characters, huge values, other scripts) in every field: 200 or 422, never a 500,
    and a refused form leaves the contact as it was."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    url, contact = page
    token = csrf_of(client.get(url).get_data(as_text=True))
    values = st.one_of(st.text(max_size=40), st.text(max_size=3000), st.sampled_from(["", "29", "2", "+1", "ZZ",
                                                                                     "Europe/Berlin", "0", "-1"]))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, values)))
    def post(data) -> None:
        before = snapshot(db_session, contact.id)
        r = client.post(url, data={"csrf_token": token, **data})
        assert r.status_code in (200, 422), (r.status_code, data)
        assert "Traceback" not in r.get_data(as_text=True)
        if r.status_code == 422:
            assert snapshot(db_session, contact.id) == before

    post()


def test_a_birthday_given_without_a_year_is_greeted(client, db_session, runtime, page, outbox, run_worker) -> None:
    from campaigns.automations import runs as auto
    from campaigns.composing.editor import save_campaign

    url, contact = page
    data = {"csrf_token": csrf_of(client.get(url).get_data(as_text=True)), **GOOD}   # 29 February, no year
    assert client.post(url, data=data).status_code == 200
    db_session.rollback()
    tpl = save_campaign(db_session, {"name": "Greeting", "kind": "nurture", "subject": "Happy birthday",
                                     "mjml": "<mjml><mj-body><mj-section><mj-column><mj-text>Happy day!</mj-text>"
                                             "</mj-column></mj-section></mj-body></mjml>", "all_contacts": "1"})
    tpl.all_contacts = True
    a = auto.save_automation(db_session, {"name": "Birthday", "trigger": "date", "date_field": "birthday",
                                          "send_time": "09:00"}, [("0", str(tpl.id))])
    auto.set_active(db_session, a, True)
    db_session.commit()
    # 2027 has no 29 February: the greeting goes on the 28th at 09:00 in the contact's new time zone (Berlin).
    assert auto.run_due(runtime, dt.datetime(2027, 2, 28, 7, 30, tzinfo=dt.UTC))["queued"] == 0   # 08:30 there
    assert auto.run_due(runtime, dt.datetime(2027, 2, 28, 8, 5, tzinfo=dt.UTC))["queued"] == 1
    run_worker()
    assert [m.recipients for m in outbox.list()] == [(contact.email,)]


def test_values_stored_before_these_checks_are_kept_when_sent_back(client, db_session, page) -> None:
    url, contact = page
    c = db_session.get(Contact, contact.id)
    c.country, c.phone, c.timezone = "UK", "0171 555", "Etc/GMT+1"      # an import's spelling
    db_session.commit()
    html = client.get(url).get_data(as_text=True)
    assert '<option value="UK" selected>' in html and '<option value="Etc/GMT+1" selected>' in html
    data = {"csrf_token": csrf_of(html), **GOOD, "country": "UK", "phone": "0171 555", "timezone": "Etc/GMT+1"}
    r = client.post(url, data=data)
    assert r.status_code == 200, r.get_data(as_text=True)[:2000]
    c = fresh(db_session).get(Contact, contact.id)
    assert (c.country, c.phone, c.timezone) == ("UK", "0171 555", "Etc/GMT+1")
