"""The contacts list (search, keyset pages forwards and back, filters) and the contact page (profile edit with
validation, subscriptions, orders and lifetime value, paginated event timeline)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from campaigns.contacts import records as contact_service
from campaigns.contacts.records import save_contact
from campaigns.models import Campaign, Contact, Event, EventType, Order, Topic, utcnow


@pytest.fixture()
def crowd(db_session):
    """23 contacts: a few named Anna/Annabel/Hannah/Becker and others, ids ascending in creation order."""
    names = [("Anna", "Becker"), ("Annabel", "Otto"), ("Hannah", "Anders"), ("Ben", "Becker"), ("anna", "Zorn")]
    names += [(f"Person{i}", "Tester") for i in range(18)]
    made = []
    for i, (first, last) in enumerate(names):
        made.append(save_contact(db_session, {"email": f"{first.lower()}.{last.lower()}{i}@example.com",
                                              "first_name": first, "last_name": last}))
    db_session.commit()
    return made


def emails(page) -> list[str]:
    return [c.email for c in page.contacts]


def test_keyset_pages_walk_forwards_and_back_without_gaps_or_repeats(db_session, crowd) -> None:
    for newest in (False, True):
        seen, page = [], contact_service.list_contacts(db_session, limit=5, newest_first=newest)
        assert page.prev_before is None
        pages = [page]
        while True:
            seen += emails(page)
            if page.next_after is None:
                break
            page = contact_service.list_contacts(db_session, limit=5, after=page.next_after, newest_first=newest)
            pages.append(page)
        expected = [c.email for c in (reversed(crowd) if newest else crowd)]
        assert seen == expected and len(pages) == 5
        # Walk back from the last page with the "previous" cursors: the same pages, in reverse.
        back = pages[-1]
        for earlier in reversed(pages[:-1]):
            back = contact_service.list_contacts(db_session, limit=5, before=back.prev_before, newest_first=newest)
            assert emails(back) == emails(earlier)
        assert back.prev_before is None and back.next_after == pages[0].next_after


def test_search_by_email_prefix_name_prefix_and_full_name(db_session, crowd) -> None:
    def find(q: str) -> set[str]:
        return {c.full_name for c in contact_service.list_contacts(db_session, query=q).contacts}

    assert find("ann") == {"Anna Becker", "Annabel Otto", "anna Zorn"}     # a prefix, not "hANNah"
    assert find("ANDE") == {"Hannah Anders"}                               # last name, any case
    assert find("becker") == {"Anna Becker", "Ben Becker"}
    assert find("anna beck") == {"Anna Becker"}
    assert find("ben.becker") == {"Ben Becker"}                 # an email prefix without @
    assert find("hannah.anders2@exa") == {"Hannah Anders"}
    assert find("hannah.anders2@other") == set()
    assert find("%") == set() and find("_") == set()           # no wildcards
    assert len(find("   ")) == 23




def _csrf(client, url: str) -> str:
    html = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_contacts_page_search_pages_and_odd_parameters(editor, crowd) -> None:
    html = editor.get("/admin/contacts?q=becker").get_data(as_text=True)
    assert "anna.becker0@example.com" in html and "ben.becker3@example.com" in html
    assert "annabel" not in html
    first = editor.get("/admin/contacts?order=oldest").get_data(as_text=True)
    assert "anna.becker0@example.com" in first and 'rel="next"' not in first   # 23 fit on one page
    for url in ("/admin/contacts?after=abc", "/admin/contacts?before=-1&q=%00", "/admin/contacts?segment=99999",
                "/admin/contacts?status=nonsense&order=sideways", "/admin/contacts?after=" + "9" * 40,
                "/admin/contacts?q=" + "x" * 5000):
        assert editor.get(url).status_code == 200, url


def test_contacts_list_pages_through_the_app(editor, db_session, make_contacts) -> None:
    make_contacts(120)
    html = editor.get("/admin/contacts?order=oldest").get_data(as_text=True)
    assert "person0@" in html and "person49@" in html and "person50@" not in html
    assert 'rel="prev"' not in html and ">First page<" not in html     # already on it
    nxt = re.search(r'href="([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    html = editor.get(nxt).get_data(as_text=True)
    assert "person50@" in html and "person99@" in html and "person49@" not in html
    assert ">First page<" in html
    prev = re.search(r'href="([^"]+)" rel="prev"', html).group(1).replace("&amp;", "&")
    html = editor.get(prev).get_data(as_text=True)
    assert "person0@" in html and "person49@" in html and "person50@" not in html


def test_contact_page_shows_profile_orders_subscriptions_and_a_paginated_timeline(editor, db_session) -> None:
    news, offers = Topic(name="Newsletter"), Topic(name="Offers")
    db_session.add_all([news, offers])
    db_session.flush()
    c = save_contact(db_session, {"email": "kim@example.com", "first_name": "Kim", "last_name": "Lee",
                                  "city": "Berlin"}, topic_ids=[news.id, offers.id], interests=["roses"])
    contact_service.set_subscriptions(db_session, c, [news.id])     # unsubscribed from offers since
    campaign = Campaign(name="March newsletter", subject="Hi", mjml="<mjml></mjml>")
    db_session.add(campaign)
    db_session.flush()
    c.orders = [Order(ordered_at=utcnow() - dt.timedelta(days=3), amount=Decimal("19.90"), reference="GT-1"),
                Order(ordered_at=utcnow() - dt.timedelta(days=30), amount=Decimal("30.10"), reference="GT-2")]
    start = utcnow() - dt.timedelta(days=10)
    for i in range(30):
        db_session.add(Event(contact_id=c.id, campaign_id=campaign.id, type=EventType.OPEN,
                             occurred_at=start + dt.timedelta(hours=i), machine=(i == 29),
                             data={"machine": "apple_mpp"} if i == 29 else {}))
    db_session.add(Event(contact_id=c.id, campaign_id=campaign.id, type=EventType.CLICK,
                         occurred_at=utcnow(), data={"url": "https://shop.test/roses"}))
    db_session.commit()

    html = editor.get(f"/admin/contacts/{c.id}").get_data(as_text=True)
    assert "Kim Lee" in html and "50.00 EUR" in html and "2 orders" in html and "GT-1" in html
    assert re.search(r"Offers</td>\s*<td><span class=\"badge muted\">unsubscribed", html)
    assert re.search(r"Newsletter</td>\s*<td><span class=\"badge ok\">subscribed", html)
    assert "https://shop.test/roses" in html and "March newsletter" in html
    assert "by a machine (apple_mpp)" in html
    assert html.count('class="badge ev-') == 25          # one page of the timeline
    older = re.search(r'href="([^"]+)">Older events', html).group(1).replace("&amp;", "&")
    html = editor.get(older).get_data(as_text=True)
    assert html.count('class="badge ev-') == 6 and "Older events" not in html and "Newest events" in html


@pytest.mark.parametrize(("field", "value", "message"), [
    ("email", "kim@", "is not a valid email address"),
    ("timezone", "Mars/Olympus", "is not a time zone"),
    ("country", "Deutschland", "two-letter code"),
    ("birthday", "31.12.1990", "is not a date"),
    ("birthday", "2999-01-01", "in the future"),
    ("first_name", "K" * 201, "first name is longer than 200"),
    ("postal_code", "1" * 21, "postal code is longer than 20"),
])
def test_contact_edit_refuses_bad_input_with_a_message_and_changes_nothing(editor, db_session, field, value,
                                                                           message) -> None:
    c = save_contact(db_session, {"email": "kim@example.com", "first_name": "Kim", "timezone": "Europe/Berlin"})
    db_session.commit()
    form = {"email": "kim@example.com", "first_name": "Kimberly", "timezone": "Europe/Berlin",
            "csrf_token": _csrf(editor, f"/admin/contacts/{c.id}")}
    form[field] = value
    r = editor.post(f"/admin/contacts/{c.id}", data=form)
    text = r.get_data(as_text=True)
    assert r.status_code == 400 and message in text
    assert 'value="Kimberly"' in text or field == "first_name"      # what was typed is kept
    db_session.rollback()
    assert db_session.scalar(select(Contact.first_name).where(Contact.id == c.id)) == "Kim"


def test_contact_edit_saves_and_unknown_contact_is_404(editor, db_session) -> None:
    c = save_contact(db_session, {"email": "kim@example.com", "first_name": "Kim"})
    db_session.commit()
    r = editor.post(f"/admin/contacts/{c.id}", data={
        "email": "KIM@example.com", "first_name": "Kimberly", "timezone": "America/New_York", "country": "us",
        "birthday": "1990-12-31", "interests": "Roses, herbs", "csrf_token": _csrf(editor, f"/admin/contacts/{c.id}")})
    assert r.status_code == 302
    db_session.rollback()
    db_session.expire_all()
    saved = db_session.get(Contact, c.id)
    assert (saved.first_name, saved.timezone, saved.country, saved.birthday) == \
        ("Kimberly", "America/New_York", "US", dt.date(1990, 12, 31))
    assert sorted(i.interest for i in saved.interests) == ["herbs", "roses"]
    assert editor.get("/admin/contacts/987654").status_code == 404
