"""Only an explicit POST changes state on a public page: every public route, walked from the app's URL map with
valid sealed tokens, answers GET, HEAD and OPTIONS without changing a single row of the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import select, text

from campaigns.archive import issues as archive_issues
from campaigns.db import Base
from campaigns.draws import service as draw_service
from campaigns.models import Campaign, Contact, ContactStatus, Send, Signup, Topic
from campaigns.signup import service as signup_service
from mailer.tracking import Purpose
from tests.campaigns.surveys.test_surveys import BROWSER, send_survey
from tests.helpers import fresh

SCANNER = {"User-Agent": "Mimecast Safe Links scanner"}


def dump(session) -> dict[str, list[tuple]]:
    """Every row of every table, in a stable order: the whole state a request could change."""
    fresh(session)
    out = {}
    for table in Base.metadata.sorted_tables:
        rows = session.execute(select(table)).all()
        out[table.name] = sorted(tuple(map(repr, row)) for row in rows)
    session.rollback()
    return out


@pytest.fixture()
def world(runtime, db_session, make_contacts, make_campaign, run_worker, client):
    """A sent survey campaign, a sign-up form with a pending sign-up, and the ids each public route acts on."""
    survey, campaign, contacts = send_survey(runtime, db_session, make_contacts, make_campaign)
    run_worker()
    form = signup_service.save_form(db_session, {"name": "Footer", "title": "News", "consent_text": "Yes."},
                                    [contacts[0].subscriptions[0].topic_id])
    db_session.commit()
    r = client.post(f"/signup/{form.public_id}", data={"email": "new@example.com", "consent": "yes",
                                                       "consent_version": str(form.consent_version),
                                                       "topics": [str(t.id) for t in form.topics], "website": ""},
                    headers=BROWSER)
    assert r.status_code == 200
    db_session.rollback()
    run_worker()
    fresh(db_session)
    signup = db_session.scalar(select(Signup))
    send = db_session.scalar(select(Send).where(Send.contact_id == contacts[0].id))
    link_id = db_session.execute(text("SELECT min(id) FROM link")).scalar()
    db_session.rollback()
    assert signup is not None and send is not None and link_id
    topic = db_session.get(Topic, contacts[0].subscriptions[0].topic_id)
    issue = archive_issues.set_archived(db_session, runtime.settings, db_session.get(Campaign, campaign.id), topic.id)
    ref, slug = archive_issues.topic_ref(topic), issue.slug
    db_session.commit()
    now = dt.datetime.now(dt.UTC)
    draw = draw_service.save_draw(db_session, {"name": "Bench", "prize": "A bench", "rules": "One entry each.",
                                               "opens_at": (now - dt.timedelta(hours=1)).isoformat(),
                                               "closes_at": (now + dt.timedelta(days=1)).isoformat()})
    db_session.commit()
    day = (dt.datetime.now(dt.UTC).date() - dt.date(1970, 1, 1)).days
    seal = runtime.tokens.seal
    contact_id = contacts[0].id
    # Endpoint -> URL arguments with valid tokens. A new public route must be added here: the test fails on it.
    args: dict[str, Callable[[], dict[str, str]]] = {
        "public.unsubscribe": lambda: {"token": seal(Purpose.UNSUBSCRIBE, contact_id, campaign.id)},
        "public.preferences": lambda: {"token": seal(Purpose.PREFERENCES, contact_id)},
        "public.details": lambda: {"token": seal(Purpose.PREFERENCES, contact_id)},
        "public.survey": lambda: {"token": seal(Purpose.SURVEY, send.id, 0, 4)},
        # The survey mail carries no event: the page says so (404) and the calendar too; tests/campaigns/events
        # walks both with a real invitation.
        "public.event_reply": lambda: {"token": seal(Purpose.EVENT, send.id, 1)},
        "public.event_calendar": lambda: {"token": seal(Purpose.EVENT, send.id, 0)},
        "public.signup_form": lambda: {"public_id": form.public_id},
        "public.signup_confirm": lambda: {"token": seal(Purpose.CONFIRM, signup.id, day)},
        "public.web_version": lambda: {"token": seal(Purpose.WEB, send.id)},
        "public.open_pixel": lambda: {"token": seal(Purpose.OPEN, send.id)},
        "public.click": lambda: {"token": seal(Purpose.CLICK, send.id, link_id)},
        "public.draw_entry": lambda: {"token": seal(Purpose.DRAW, draw.id, contact_id, 0)},
        "public.draw_page": lambda: {"public_id": draw.public_id},
        "public.draw_data": lambda: {"public_id": draw.public_id},
        # No transactional message here (their hits are walked in tests/campaigns/transactional): an unknown one.
        "public.tx_open_pixel": lambda: {"token": seal(Purpose.TX_OPEN, 1)},
        "public.tx_click": lambda: {"token": seal(Purpose.TX_CLICK, 1, link_id)},
        "public.archive_index": lambda: {"ref": ref},
        "public.archive_issue": lambda: {"ref": ref, "slug": slug},
        "public.archive_feed": lambda: {"ref": ref},
        "public.relay_events": dict,
        "public.relay_native": lambda: {"relay": "sendgrid"},
        "static": lambda: {"filename": "admin.css"},
        "index": dict,
        "probes.healthz": dict,
        "probes.readyz": dict,
        "probes.metrics": dict,
    }
    # The REST API answers without a key with 401 (and its documents change nothing): any ids will do.
    for rule in client.application.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            args[rule.endpoint] = (lambda names: lambda: dict.fromkeys(names, "1"))(sorted(rule.arguments))
    return args, contact_id


def public_rules(app):
    return [r for r in app.url_map.iter_rules() if not r.endpoint.startswith("admin.")]


def test_get_head_and_options_change_nothing_on_any_public_route(app, client, db_session, world) -> None:
    args, contact_id = world
    rules = public_rules(app)
    unknown = sorted(r.endpoint for r in rules if r.endpoint not in args)
    assert not unknown, f"public routes without a state test (add them to world()): {unknown}"
    before = dump(db_session)
    assert before["send"] and before["signup"] and before["survey_answer"] == []
    answered = []
    for rule in rules:
        url = rule.build(args[rule.endpoint](), append_unknown=False)[1]
        for method in ("GET", "HEAD", "OPTIONS"):
            for headers in (BROWSER, SCANNER):
                r = client.open(url, method=method, headers=headers)
                assert r.status_code < 500, (method, url, r.status_code)
                answered.append((method, rule.endpoint, r.status_code))
                assert dump(db_session) == before, f"{method} {rule.rule} changed the database"
    assert ("HEAD", "public.unsubscribe", 200) in answered and ("GET", "public.survey", 200) in answered
    assert ("GET", "public.draw_entry", 200) in answered and ("HEAD", "public.draw_entry", 200) in answered
    assert ("GET", "public.archive_issue", 200) in answered and ("HEAD", "public.archive_feed", 200) in answered
    assert fresh(db_session).get(Contact, contact_id).status == ContactStatus.SUBSCRIBED


def test_only_post_unsubscribes_and_one_click_still_works(runtime, client, db_session, world) -> None:
    args, contact_id = world
    url = "/u/" + args["public.unsubscribe"]()["token"]
    assert client.head(url).status_code == 200
    assert fresh(db_session).get(Contact, contact_id).status == ContactStatus.SUBSCRIBED
    db_session.rollback()
    r = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert fresh(db_session).get(Contact, contact_id).status == ContactStatus.UNSUBSCRIBED
    db_session.rollback()


def test_a_survey_answer_clicked_in_the_mail_is_recorded_only_by_the_pages_post(client, db_session, world) -> None:
    args, contact_id = world
    url = "/s/" + args["public.survey"]()["token"]
    page = client.get(url, headers=BROWSER).get_data(as_text=True)
    assert 'name="q0" value="4" checked' in page and "Send my answers" in page
    assert dump(db_session)["survey_answer"] == []
    assert client.post(url, data={"q0": "4"}, headers=BROWSER).status_code == 200
    assert len(dump(db_session)["survey_answer"]) == 1



def test_other_spellings_of_a_valid_token_get_the_404(client, db_session, world) -> None:
    args, _contact_id = world
    for endpoint, prefix in (("public.unsubscribe", "/u/"), ("public.preferences", "/p/"), ("public.click", "/c/"),
                             ("public.survey", "/s/"), ("public.web_version", "/m/")):
        token = args[endpoint]()["token"]
        assert client.get(prefix + token, headers=BROWSER).status_code in (200, 302)
        for spelling in (token + "=", token + ".", token + "~", token + "%00", token + "%0a",
                         token.replace("-", "+") if "-" in token else None):   # "/" for "_": a unit test
            if spelling is not None:
                assert client.get(prefix + spelling, headers=BROWSER).status_code == 404, (endpoint, spelling)
