"""The demo's contacts agree with their own seeded history (issue 17 item 3)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from campaigns.contacts.records import normalize_email
from campaigns.demo.data import seed
from campaigns.feedback.engagement import current_score
from campaigns.models import Automation, AutomationTrigger, Contact, Event, EventType, Send, Subscription
from tests.helpers import fresh


@pytest.fixture()
def demo(runtime, db_session):
    assert seed(runtime.settings, contacts=80)
    return fresh(db_session)


def _latest(session, type_: EventType) -> dict[int, dt.datetime]:
    return dict(session.execute(select(Event.contact_id, func.max(Event.occurred_at)).where(
        Event.type == type_, Event.machine.is_(False)).group_by(Event.contact_id)).all())


def test_engagement_fields_come_from_the_seeded_events(demo) -> None:
    opened, clicked = _latest(demo, EventType.OPEN), _latest(demo, EventType.CLICK)
    replied, entered = _latest(demo, EventType.REPLY), _latest(demo, EventType.DRAW_ENTRY)
    mailed = dict(demo.execute(select(Send.contact_id, func.max(Send.sent_at)).group_by(Send.contact_id)).all())
    assert len(opened) > 20 and len(clicked) > 3 and len(mailed) > 40
    for c in demo.scalars(select(Contact)):
        assert c.last_opened_at == opened.get(c.id), c.email
        assert c.last_clicked_at == clicked.get(c.id), c.email
        assert c.last_sent_at == mailed.get(c.id), c.email
        engaged = c.id in opened or c.id in clicked or c.id in entered   # entering a draw is engagement too
        assert (c.engagement_score > 0) is engaged and (current_score(c) > 0) is engaged, c.email
        if engaged:   # the score is stored as of the contact's latest human open, click, reply or draw entry
            assert c.engagement_at == max(t for t in (opened.get(c.id), clicked.get(c.id), replied.get(c.id),
                                                      entered.get(c.id)) if t)


def test_topic_subscriptions_date_from_when_the_contact_joined(demo) -> None:
    today = dt.datetime.now(dt.UTC).date()
    rows = demo.execute(select(Subscription, Contact.created_at).join(Contact)).all()
    assert rows
    for sub, created in rows:
        assert created <= sub.updated_at <= dt.datetime.now(dt.UTC)
    # Customers from months ago are not "subscribed since" the day the demo was seeded.
    assert sum(1 for sub, _ in rows if sub.updated_at.date() == today) < len(rows) / 10
    # Who left a topic in the seeded history left it then, not today.
    left = dict(demo.execute(select(Event.contact_id, Event.occurred_at).where(Event.type == EventType.UNSUBSCRIBE,
                                                                              Event.campaign_id.is_not(None))).all())
    for sub, _ in rows:
        if not sub.subscribed and sub.contact_id in left:
            assert sub.updated_at == left[sub.contact_id]


def test_demo_addresses_spell_accented_names_out(demo) -> None:
    contacts = list(demo.scalars(select(Contact)))
    for c in contacts:
        assert c.email.isascii() and normalize_email(c.email) == c.email
        local = c.email.split("@")[0]
        last = c.last_name.lower()
        if last in ("müller", "schröder", "köhler", "krüger"):
            assert last.replace("ü", "ue").replace("ö", "oe") in local, c.email
        assert "mller" not in local and "krger" not in local


def test_contacts_join_in_id_order_and_never_order_in_the_future(demo) -> None:
    """The contacts list sorts "Newest first" by id: its "Added" column must read in the same order."""
    created = list(demo.scalars(select(Contact.created_at).order_by(Contact.id)))
    assert created == sorted(created)
    now = dt.datetime.now(dt.UTC)
    for contact in demo.scalars(select(Contact)):
        for order in contact.orders:
            assert contact.created_at <= order.ordered_at <= now, (contact.email, order.ordered_at)


def test_the_demo_survey_mail_counts_its_questions_right(demo) -> None:
    from campaigns.demo.data import SURVEY_MJML
    from campaigns.models import Survey

    survey = demo.scalar(select(Survey))
    words = {2: "Two", 3: "Three", 4: "Four", 5: "Five"}
    n = len(survey.questions)
    assert survey.intro.startswith(f"{words[n]} quick questions")
    # The mail asks the first question; the page it opens has the rest.
    assert f"has {words[n - 1].lower()} more short questions" in " ".join(SURVEY_MJML.split())


def test_the_demo_has_a_post_purchase_automation_switched_on(demo) -> None:
    post = demo.scalars(select(Automation).where(Automation.trigger == AutomationTrigger.ORDER)).all()
    assert [(a.name, a.active, [s.template.kind for s in a.steps]) for a in post] == [
        ("After an order", True, ["transactional", "nurture", "nurture"])]


def test_a_few_customers_replied_and_one_was_out_of_office(demo) -> None:
    from campaigns.models import Reply

    replies = list(demo.scalars(select(Reply).order_by(Reply.id)))
    assert [r.auto for r in replies] == [False, False, False, True]
    assert replies[1].text.startswith("Könnten Sie") and "schrieb" not in replies[1].text
    assert all(r.matched_by == "token" and r.campaign_id for r in replies)
    # The people's replies are owed a forward to their owner (the demo's worker sends it to the Outbox).
    assert [r.forward_state for r in replies[:3]] == ["pending"] * 3
    assert all(demo.get(Contact, r.contact_id).owner_id for r in replies[:3])
    for r in replies:   # on the timeline when they came, after the mail went out
        event = demo.scalar(select(Event).where(Event.contact_id == r.contact_id,
                                                Event.type.in_([EventType.REPLY, EventType.AUTO_REPLY])))
        sent = demo.scalar(select(Send.sent_at).where(Send.id == r.send_id))
        assert event.occurred_at == r.received_at and sent < r.received_at <= dt.datetime.now(dt.UTC)


def test_the_demo_newsletters_are_in_the_public_archive(demo, client) -> None:
    from campaigns.archive import issues
    from campaigns.models import ArchivedIssue, FeedMailing, Topic

    topic = demo.scalar(select(Topic).where(Topic.name == "Newsletter"))
    assert demo.scalar(select(func.count()).select_from(ArchivedIssue)) == 3
    page = client.get(f"/archive/{issues.topic_ref(topic)}").get_data(as_text=True)
    assert "Season&#39;s greetings from all of us" in page and "Hello, plans for the new season" in page
    assert client.get(f"/archive/{issues.topic_ref(topic)}/feed.atom").status_code == 200
    mailing = demo.scalar(select(FeedMailing))
    assert mailing is not None and not mailing.active and "feed_items" in mailing.template.mjml


def test_demo_seeds_loyalty_tiers_from_its_orders(demo) -> None:
    from campaigns.models import LoyaltyTier
    from campaigns.orders import tiers

    assert [t.name for t in demo.scalars(select(LoyaltyTier).order_by(LoyaltyTier.rank))] == ["Member", "Silver",
                                                                                           "Gold"]
    by_tier = dict(demo.execute(select(Contact.tier, func.count()).group_by(Contact.tier)).all())
    assert by_tier.get("Member") and by_tier.get("Silver") and by_tier.get("Gold") and by_tier.get("")
    # Exactly what the rules give for the seeded orders.
    ids = list(demo.scalars(select(Contact.id)))
    reached = tiers.compute(demo, tiers.rules(demo), ids, dt.datetime.now(dt.UTC))
    assert {cid: (t.name if t else "") for cid, t in reached.items()} == dict(
        demo.execute(select(Contact.id, Contact.tier)).all())
    from campaigns.models import Automation
    assert {a.name for a in demo.scalars(select(Automation))} >= {"Reached a new tier",
                                                                  "Is this still right? (every March)"}


def test_demo_seeds_an_open_prize_draw_with_a_few_entries(demo, client) -> None:
    from campaigns.draws import service as draws
    from campaigns.models import Draw, DrawEntry

    draw = demo.scalar(select(Draw))
    assert draw is not None and draws.state(draw) == "open"
    assert demo.scalar(select(func.count()).select_from(DrawEntry)) == 6
    data = client.get(f"/draws/{draw.public_id}/data.json").get_json()
    assert len(data["entries"]) == 6 and data["seed"] is None and data["seed_hash"] == draw.seed_hash


def test_the_demo_seeds_an_upcoming_event_with_a_few_answers(demo, client) -> None:
    from campaigns.events import attendance
    from campaigns.models import CalendarEvent, utcnow

    event = demo.scalar(select(CalendarEvent))
    assert event.starts_at > utcnow() and event.campaign_id is not None
    figures = attendance.figures(demo, event)
    # Seven said yes to six places: six hold one, the seventh waits.
    assert (figures.yes, figures.waitlist, figures.maybe, figures.no, figures.remaining) == (6, 1, 2, 2, 0)
