"""Segments: validation, compilation on the real database, the builder's live count, saved segments as a
campaign's audience and as an export filter."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from campaigns.contacts import segments
from campaigns.contacts.records import save_contact
from campaigns.errors import InvalidState, ValidationError
from campaigns.models import (
    Campaign,
    Contact,
    ContactStatus,
    Event,
    EventType,
    Order,
    Segment,
    Topic,
    utcnow,
)
from tests.helpers import csrf, export_contacts


def rule(field: str, op: str, value=None, **extra) -> dict:
    r = {"field": field, "op": op, **extra}
    if value is not None:
        r["value"] = value
    return r


def all_of(*rules) -> dict:
    return {"match": "all", "rules": list(rules)}


def any_of(*rules) -> dict:
    return {"match": "any", "rules": list(rules)}


# ---------------------------------------------------------------- validation (no database)

@pytest.mark.parametrize(("definition", "message"), [
    ("{not json", "not valid JSON"),
    ([1, 2], "must be an object"),
    ({"match": "some", "rules": []}, 'match must be "all" or "any"'),
    (all_of(rule("password", "is", "x")), "rule 1: choose a field"),
    (all_of(rule("city", "drop table", "x")), "rule 1 (City): choose a condition"),
    (all_of(rule("city", "is")), "enter a value"),
    (all_of(rule("lifetime_value", "gte", "lots")), "'lots' is not a number"),
    (all_of(rule("created_at", "before", "31/12/2025")), "is not a date like"),
    (all_of(rule("opened", "in_last_days", 0)), "from 1 to 36500"),
    (all_of(rule("birthday_month", "is", 13)), "from 1 to 12"),
    (all_of(rule("status", "is", "vip")), "unknown status"),
    (all_of(rule("attribute", "is", "gold")), "name the attribute"),
    (all_of(rule("attribute", "is", "gold", key="plan'); --")), "an attribute name has"),
    (all_of(rule("city", "is", "x" * 201)), "longer than 200"),
    (all_of(rule("city", "is", "Berlin"), any_of(rule("city", "is", "Wien"), all_of(any_of(rule("city", "is", "x"))))),
     "nested 2 levels deep at most"),
    (all_of(*[rule("city", "is", str(i)) for i in range(61)]), "60 rules at most"),
])
def test_bad_definitions_are_refused_with_a_message_saying_where(definition, message) -> None:
    raw = definition if isinstance(definition, str) else json.dumps(definition)
    with pytest.raises(ValidationError) as exc:
        segments.parse_definition(raw)
    assert message in str(exc.value)


def test_definitions_are_normalized_and_described() -> None:
    d = segments.parse_definition(all_of(
        rule("city", "is", "  Berlin "), rule("lifetime_value", "gte", "99,50"), rule("interest", "has", "Roses"),
        any_of(rule("opened", "in_last_days", "30"), rule("birthday_month", "this_month", "ignored"))))
    assert d["rules"][0]["value"] == "Berlin" and d["rules"][1]["value"] == "99.50"
    assert d["rules"][3]["rules"][0]["value"] == 30 and "value" not in d["rules"][3]["rules"][1]
    text = segments.describe(d)
    assert text == ('city is "Berlin" and lifetime value at least 99.50 and interest has "Roses" and '
                    "(opened a mail (people, not machines) in the last 30 days or birthday month is this month)")


# ---------------------------------------------------------------- compilation on the real database

@pytest.fixture()
def people(db_session):
    """Six contacts that differ in every way a segment can tell apart."""
    news = Topic(name="Newsletter")
    offers = Topic(name="Offers")
    db_session.add_all([news, offers])
    db_session.flush()
    now = utcnow()
    spec = {
        "anna": dict(city="Berlin", country="DE", birthday="1980-03-04", interests=["roses", "herbs"],
                     attributes={"plan": "Gold", "visits": "12"}, topics=[news.id, offers.id]),
        "ben": dict(city="berlin", country="DE", birthday="1975-11-20", interests=["tools"],
                    attributes={"plan": "silver", "visits": "3"}, topics=[news.id]),
        "clara": dict(city="Wien", country="AT", birthday="1990-03-30", interests=["roses"],
                      attributes={"visits": "abc"}, topics=[offers.id]),
        "david": dict(city="Zürich", country="CH", birthday="", interests=[], attributes={"visits": 40},
                      topics=[]),
        "elif": dict(city="Köln", country="DE", birthday="2000-07-01", interests=["bees"],
                     attributes={"plan": ""}, topics=[news.id]),
        "felix": dict(city="", country="", birthday="", interests=[], attributes={}, topics=[news.id]),
    }
    out = {}
    for name, s in spec.items():
        c = save_contact(db_session, {"email": f"{name}@example.com", "first_name": name.title(),
                                      "city": s["city"], "country": s["country"], "birthday": s["birthday"],
                                      "attributes": s["attributes"]},
                         topic_ids=s["topics"], interests=s["interests"])
        out[name] = c
    out["felix"].status = ContactStatus.UNSUBSCRIBED
    # Orders: anna 2 × 60 = 120, ben 1 × 15, clara 3 × 50 = 150 (the last one long ago).
    orders = (("anna", [60, 60], [10, 20]), ("ben", [15], [400]), ("clara", [50, 50, 50], [5, 6, 700]))
    for who, amounts, days in orders:
        for amount, ago in zip(amounts, days, strict=True):
            db_session.add(Order(contact_id=out[who].id, ordered_at=now - dt.timedelta(days=ago),
                                 amount=Decimal(amount)))
    # Engagement: anna opened (human) 5 days ago, ben only by a machine, clara clicked 40 days ago.
    db_session.add_all([
        Event(contact_id=out["anna"].id, type=EventType.OPEN, occurred_at=now - dt.timedelta(days=5)),
        Event(contact_id=out["ben"].id, type=EventType.OPEN, occurred_at=now - dt.timedelta(days=1), machine=True),
        Event(contact_id=out["clara"].id, type=EventType.CLICK, occurred_at=now - dt.timedelta(days=40)),
    ])
    out["anna"].last_sent_at = now - dt.timedelta(days=2)
    out["ben"].last_sent_at = now - dt.timedelta(days=100)
    out["david"].created_at = now - dt.timedelta(days=500)
    db_session.commit()
    out["topics"] = {"news": news.id, "offers": offers.id}
    return out


def who(db_session, definition) -> set[str]:
    cond = segments.condition(db_session, definition, now=utcnow())
    names = db_session.scalars(select(Contact.email).where(cond))
    return {n.split("@")[0] for n in names}


def test_profile_fields_are_case_insensitive_and_combine_with_and_or(db_session, people) -> None:
    assert who(db_session, all_of(rule("city", "is", "BERLIN"))) == {"anna", "ben"}
    assert who(db_session, all_of(rule("city", "is_not", "berlin"))) == {"clara", "david", "elif", "felix"}
    assert who(db_session, all_of(rule("city", "contains", "ö"))) == {"elif"}
    assert who(db_session, all_of(rule("email", "starts_with", "a"))) == {"anna"}
    assert who(db_session, all_of(rule("city", "is_empty"))) == {"felix"}
    assert who(db_session, all_of(rule("status", "is_not", "subscribed"))) == {"felix"}
    nested = all_of(rule("country", "is", "de"), any_of(rule("interest", "has", "roses"),
                                                        rule("interest", "has", "bees")))
    assert who(db_session, nested) == {"anna", "elif"}
    assert who(db_session, any_of(rule("city", "is", "wien"), all_of(rule("city", "is", "berlin"),
                                                                     rule("interest", "has_not", "roses")))) \
        == {"clara", "ben"}
    # Wildcards typed by a user are literal characters, not patterns.
    assert who(db_session, all_of(rule("city", "contains", "%"))) == set()
    assert who(db_session, all_of(rule("city", "contains", "_"))) == set()


def test_custom_attributes_are_read_portably_and_never_fail_on_odd_values(db_session, people) -> None:
    assert who(db_session, all_of(rule("attribute", "is", "gold", key="plan"))) == {"anna"}
    assert who(db_session, all_of(rule("attribute", "is_not", "gold", key="plan"))) == \
        {"ben", "clara", "david", "elif", "felix"}
    assert who(db_session, all_of(rule("attribute", "exists", key="plan"))) == {"anna", "ben"}
    assert who(db_session, all_of(rule("attribute", "not_exists", key="plan"))) == {"clara", "david", "elif", "felix"}
    # "abc" is not a number: it neither matches nor breaks the query; 40 is stored as a JSON number.
    assert who(db_session, all_of(rule("attribute", "gte", "10", key="visits"))) == {"anna", "david"}
    assert who(db_session, all_of(rule("attribute", "lte", "10", key="visits"))) == {"ben"}
    assert who(db_session, all_of(rule("attribute", "is", "x", key="no such key"))) == set()


def test_orders_engagement_birthdays_topics_and_dates(db_session, people) -> None:
    assert who(db_session, all_of(rule("lifetime_value", "gte", "100"))) == {"anna", "clara"}
    assert who(db_session, all_of(rule("lifetime_value", "lt", "20"))) == {"ben", "david", "elif", "felix"}
    assert who(db_session, all_of(rule("order_count", "eq", "0"))) == {"david", "elif", "felix"}
    assert who(db_session, all_of(rule("order_count", "gte", "2"))) == {"anna", "clara"}
    assert who(db_session, all_of(rule("last_order_at", "in_last_days", 30))) == {"anna", "clara"}
    assert who(db_session, all_of(rule("last_order_at", "is_empty"))) == {"david", "elif", "felix"}
    # A machine open is not engagement.
    assert who(db_session, all_of(rule("opened", "in_last_days", 30))) == {"anna"}
    assert who(db_session, all_of(rule("clicked", "in_last_days", 30))) == set()
    assert who(db_session, all_of(rule("clicked", "in_last_days", 60))) == {"clara"}
    assert "ben" in who(db_session, all_of(rule("opened", "not_in_last_days", 30)))
    # Not contacted in 30 days: never mailed, or mailed before that.
    assert who(db_session, all_of(rule("last_sent_at", "not_in_last_days", 30))) == \
        {"ben", "clara", "david", "elif", "felix"}
    assert who(db_session, all_of(rule("birthday_month", "is", 3))) == {"anna", "clara"}
    assert who(db_session, all_of(rule("birthday_month", "is_not", 3))) == {"ben", "david", "elif", "felix"}
    this_month = utcnow().month
    expected = {n for n, m in (("anna", 3), ("ben", 11), ("clara", 3), ("elif", 7)) if m == this_month}
    assert who(db_session, all_of(rule("birthday_month", "this_month"))) == expected
    offers = people["topics"]["offers"]
    assert who(db_session, all_of(rule("topic", "subscribed", offers))) == {"anna", "clara"}
    assert "anna" not in who(db_session, all_of(rule("topic", "not_subscribed", offers)))
    assert who(db_session, all_of(rule("created_at", "before", (utcnow() - dt.timedelta(days=400)).date()
                                       .isoformat()))) == {"david"}
    assert who(db_session, all_of(rule("created_at", "in_last_days", 30))) == \
        {"anna", "ben", "clara", "elif", "felix"}


def test_survey_answer_rules_read_the_stored_answers(db_session, people) -> None:
    from campaigns.models import Survey, SurveyAnswer, SurveyQuestion

    survey = Survey(name="Garden", questions=[SurveyQuestion(position=0, kind="yes_no", prompt="Roses?"),
                                              SurveyQuestion(position=1, kind="text", prompt="Why?")])
    db_session.add(survey)
    db_session.flush()
    db_session.add(SurveyAnswer(survey_id=survey.id, question_id=survey.questions[0].id, position=0,
                                contact_id=people["ben"].id, send_id=1, value="yes"))
    db_session.commit()
    answered = all_of(rule("survey", "answered", {"survey_id": survey.id, "question": 1, "answer": "YES"}))
    assert who(db_session, answered) == {"ben"}
    anything = all_of(rule("survey", "answered", {"survey_id": survey.id, "question": 2, "answer": ""}))
    assert who(db_session, anything) == set()


# ---------------------------------------------------------------- saved segments

def test_saved_segments_validate_names_topics_and_cannot_be_deleted_while_in_use(db_session, people,
                                                                                 make_campaign) -> None:
    good = json.dumps(all_of(rule("city", "is", "berlin")))
    seg = segments.save_segment(db_session, {"name": "Berliners", "definition": good})
    db_session.commit()
    with pytest.raises(ValidationError, match="already a segment called"):
        segments.save_segment(db_session, {"name": "berliners", "definition": good})
    with pytest.raises(ValidationError, match="add at least one rule"):
        segments.save_segment(db_session, {"name": "Empty", "definition": ""})
    with pytest.raises(ValidationError, match="topic that no longer exists"):
        segments.save_segment(db_session, {"name": "Ghost", "definition": json.dumps(
            all_of(rule("topic", "subscribed", 999999)))})
    db_session.rollback()
    campaign = make_campaign([])
    campaign.segment_id = seg.id
    db_session.commit()
    with pytest.raises(InvalidState, match="Test campaign"):
        segments.delete_segment(db_session, seg)


# ---------------------------------------------------------------- through the admin



def _csrf(client, url: str) -> str:
    html = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_builder_live_count_and_save_through_the_admin(editor, db_session, people) -> None:
    page = editor.get("/admin/segments/new")
    assert page.status_code == 200 and 'id="segment-builder"' in page.get_data(as_text=True)
    token = _csrf(editor, "/admin/segments/new")
    definition = all_of(rule("city", "is", "berlin"), rule("opened", "in_last_days", 30))
    r = editor.post("/admin/segments/count", json={"definition": definition}, headers={"X-CSRFToken": token})
    assert r.status_code == 200
    body = r.get_json()
    assert body["count"] == 1 and body["sample"][0]["email"] == "anna@example.com"
    assert "in the last 30 days" in body["summary"]
    # Without the CSRF header the count is refused (it is a POST like any other).
    assert editor.post("/admin/segments/count", json={"definition": definition}).status_code == 400
    r = editor.post("/admin/segments/count", json={"definition": all_of(rule("lifetime_value", "gte", "x"))},
                    headers={"X-CSRFToken": token})
    assert r.status_code == 400 and "is not a number" in r.get_json()["error"]
    r = editor.post("/admin/segments/count", data="nonsense", headers={"X-CSRFToken": token})
    assert r.status_code == 400 and "JSON" in r.get_json()["error"]

    # A bad definition keeps what was typed and says why.
    r = editor.post("/admin/segments/new", data={"name": "Active Berliners", "csrf_token": token,
                                                 "definition": '{"match": "all", "rules": [{"field": "city"}]}'})
    text = r.get_data(as_text=True)
    assert r.status_code == 400 and "choose a condition" in text and 'value="Active Berliners"' in text
    r = editor.post("/admin/segments/new", data={"name": "Active Berliners", "csrf_token": token,
                                                 "definition": json.dumps(definition)})
    assert r.status_code == 302
    seg = db_session.scalar(select(Segment).where(Segment.name == "Active Berliners"))
    assert seg.definition["rules"][1] == {"field": "opened", "op": "in_last_days", "value": 30}
    listing = editor.get("/admin/segments").get_data(as_text=True)
    assert "Active Berliners" in listing and "city is" in listing
    assert editor.get(f"/admin/segments/{seg.id}/count").get_json() == {"count": 1}
    # The contacts list filtered by the segment.
    html = editor.get(f"/admin/contacts?segment={seg.id}").get_data(as_text=True)
    assert "anna@example.com" in html and "ben@example.com" not in html
    assert editor.get("/admin/segments/999999").status_code == 404


def test_segment_is_dynamic_and_narrows_a_campaign_audience(editor, db_session, people, outbox,
                                                          run_worker) -> None:
    token = _csrf(editor, "/admin/segments/new")
    r = editor.post("/admin/segments/new", data={"name": "Rose lovers", "csrf_token": token,
                                                 "definition": json.dumps(all_of(rule("interest", "has", "roses")))})
    assert r.status_code == 302
    seg = db_session.scalar(select(Segment).where(Segment.name == "Rose lovers"))
    from tests.conftest import NEWSLETTER_MJML

    news = people["topics"]["news"]
    r = editor.post("/admin/campaigns/new", data={
        "name": "Roses", "kind": "nurture", "subject": "Roses", "mjml": NEWSLETTER_MJML, "topics": [news],
        "segment_id": str(seg.id), "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)
    db_session.rollback()   # end the read snapshot: the app committed in its own session
    campaign = db_session.scalar(select(Campaign).where(Campaign.name == "Roses"))
    assert campaign.segment_id == seg.id
    edit = editor.get(f"/admin/campaigns/{campaign.id}/edit").get_data(as_text=True)
    assert f'<option value="{seg.id}" selected>Rose lovers</option>' in edit
    # A segment that does not exist is refused, not stored.
    r = editor.post(f"/admin/campaigns/{campaign.id}/edit", data={
        "name": "Roses", "kind": "nurture", "subject": "Roses", "mjml": NEWSLETTER_MJML, "segment_id": "424242",
        "csrf_token": token})
    assert r.status_code == 400 and "segment does not exist" in r.get_data(as_text=True)

    # Dynamic: ben takes up roses after the segment was saved, and is in the audience.
    save_contact(db_session, {"email": "ben@example.com", "first_name": "Ben", "city": "berlin",
                              "country": "DE"}, people["ben"], interests=["tools", "roses"])
    db_session.commit()
    # Newsletter subscribers (anna, ben, elif; felix unsubscribed) ∩ roses (anna, clara, ben) = anna, ben.
    r = editor.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token})
    assert r.status_code == 302
    run_worker()
    assert sorted(r for m in outbox.list(limit=50) for r in m.recipients) == ["anna@example.com", "ben@example.com"]


def test_segment_alone_is_an_audience_and_export_filters_by_segment(editor, db_session, people, work) -> None:
    seg = segments.save_segment(db_session, {"name": "Germany", "definition": json.dumps(
        all_of(rule("country", "is", "de")))})
    campaign = Campaign(name="DE only", subject="Hallo", mjml="<mjml></mjml>", segment_id=seg.id)
    db_session.add(campaign)
    db_session.commit()
    from campaigns.sending.lifecycle import audience_count

    assert audience_count(db_session, campaign) == 3    # anna, ben, elif (felix is not German, clara neither)
    body, _ = export_contacts(editor, work, segment=str(seg.id))
    rows = list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))
    assert sorted(row["email"] for row in rows) == ["anna@example.com", "ben@example.com", "elif@example.com"]
    r = editor.post("/admin/contacts/exports", data={"segment": "999999",
                                                     "csrf_token": csrf(editor, "/admin/contacts/export")})
    assert r.status_code == 302 and "Cannot export" in editor.get(r.headers["Location"]).get_data(as_text=True)
    assert "Germany" in editor.get(f"/admin/contacts/export?segment={seg.id}").get_data(as_text=True)


def test_a_campaign_to_a_segment_alone_is_delivered_to_the_segment(editor, db_session, people, outbox,
                                                                   run_worker) -> None:
    """No topics chosen: the send-time re-check must not ask for a topic subscription the audience never needed."""
    from tests.conftest import NEWSLETTER_MJML

    seg = segments.save_segment(db_session, {"name": "Germany", "definition": json.dumps(
        all_of(rule("country", "is", "de")))})
    db_session.commit()
    token = _csrf(editor, "/admin/campaigns/new")
    r = editor.post("/admin/campaigns/new", data={
        "name": "DE only", "kind": "nurture", "subject": "Hallo", "mjml": NEWSLETTER_MJML,
        "segment_id": str(seg.id), "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)
    db_session.rollback()
    campaign = db_session.scalar(select(Campaign).where(Campaign.name == "DE only"))
    assert editor.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token}).status_code == 302
    run_worker()
    assert sorted(r for m in outbox.list(limit=50) for r in m.recipients) == [
        "anna@example.com", "ben@example.com", "elif@example.com"]


def test_random_junk_never_makes_the_count_endpoint_fail(editor) -> None:
    token = _csrf(editor, "/admin/segments/new")
    rnd = random.Random(6)
    atoms = [None, True, 0, -1, 2**70, 1.5, "", "x", "é' OR 1=1 --", "%", [], {}, {"rules": 1}, {"rules": []},
             "2026-02-30", "NaN", "Infinity", "1e400", "a\x00b", {"survey_id": "1", "question": "0", "answer": 5}]
    fields = [*segments.FIELDS, "id", "password_hash"]
    ops = sorted({op for ops in segments.OPERATORS.values() for op in ops}) + ["eval"]
    for _ in range(300):
        r = {"field": rnd.choice(fields), "op": rnd.choice(ops), "value": rnd.choice(atoms)}
        if rnd.random() < 0.3:
            r["key"] = rnd.choice(atoms)
        if rnd.random() < 0.2:
            r = rnd.choice(atoms)
        definition = {"match": rnd.choice(["all", "any", "none"]), "rules": [r, rule("city", "is", "x")]}
        resp = editor.post("/admin/segments/count", json={"definition": definition}, headers={"X-CSRFToken": token})
        assert resp.status_code in (200, 400), (definition, resp.get_data(as_text=True))
        assert ("count" in resp.get_json()) == (resp.status_code == 200)
