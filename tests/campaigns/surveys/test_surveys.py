"""Surveys: 1-5 questions, a one-click answer in the mail, the page that holds it, events, segments, results, CSV."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from campaigns.contacts import segment_sql
from campaigns.errors import InvalidState, ValidationError
from campaigns.models import Contact, Event, EventType, SurveyAnswer
from campaigns.sending import lifecycle as sending
from campaigns.surveys import responses
from campaigns.surveys import results as survey_results
from campaigns.surveys import service as survey_service
from mailer.tracking import Purpose

QUESTIONS = [
    {"prompt": "How happy are you with your last order?", "kind": "rating"},
    {"prompt": "Would you recommend us?", "kind": "yes_no"},
    {"prompt": "What do you grow most?", "kind": "choice", "choices": ["Roses", "Vegetables", "Herbs"]},
    {"prompt": "Anything we should do better?", "kind": "text"},
]
SURVEY_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}, a quick question:</mj-text>
<mj-text>{{ survey_block() }}</mj-text>
<mj-button href="{{ survey_url(5) }}">Loved it</mj-button>
<mj-button href="https://shop.test/guide">Read the guide</mj-button>
</mj-column></mj-section></mj-body></mjml>"""
SURVEY_LINK = re.compile(r"https://mail\.shop\.test/s/[A-Za-z0-9_-]+")
BROWSER = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari"}


def make_survey(session, questions=QUESTIONS, name="After your order"):
    survey = survey_service.save_survey(session, {"name": name, "thanks": "Thanks, gardener!"}, questions)
    session.commit()
    return survey


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_one_to_five_questions_and_six_is_refused_with_a_clear_message(db_session) -> None:
    survey = make_survey(db_session)
    assert [q.kind for q in survey.questions] == ["rating", "yes_no", "choice", "text"]
    six = QUESTIONS + [{"prompt": f"Extra {i}", "kind": "yes_no"} for i in range(2)]
    with pytest.raises(ValidationError, match="at most 5 questions.*has 6. Remove 1"):
        survey_service.save_survey(db_session, {"name": "Too long"}, six)
    with pytest.raises(ValidationError, match="at least one question"):
        survey_service.save_survey(db_session, {"name": "Empty"}, [])
    with pytest.raises(ValidationError, match="give 2 to 10 choices"):
        survey_service.save_survey(db_session, {"name": "Bad"}, [{"prompt": "Pick", "kind": "choice",
                                                                   "choices": ["Only one"]}])
    with pytest.raises(ValidationError, match="choose a kind"):
        survey_service.save_survey(db_session, {"name": "Bad"}, [{"prompt": "Hm", "kind": "essay"}])


def send_survey(runtime, db_session, make_contacts, make_campaign, n=3):
    from campaigns.composing.editor import save_campaign

    topic, contacts = make_contacts(n)
    survey = make_survey(db_session)
    campaign = save_campaign(db_session, {"name": "Survey mail", "subject": "How did we do?", "mjml": SURVEY_MJML,
                                          "survey_id": str(survey.id)}, topic_ids=[topic.id])
    db_session.commit()
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    return survey, campaign, contacts


def links_by_recipient(outbox) -> dict[str, dict]:
    out = {}
    for entry in outbox.list(limit=1000):
        msg = outbox.get(entry.key)
        out[msg.recipients[0]] = {"html": msg.html, "text": msg.text, "links": SURVEY_LINK.findall(msg.html)}
    return out


def test_one_click_answer_in_the_mail_then_the_page_holds_it_and_asks_the_rest(
        runtime, db_session, make_contacts, make_campaign, outbox, run_worker, client) -> None:
    survey, campaign, contacts = send_survey(runtime, db_session, make_contacts, make_campaign)
    run_worker()
    mails = links_by_recipient(outbox)
    anna = contacts[0]
    mail = mails[anna.email]
    # Five rating links in the block plus the "Loved it" button; none rewritten into a tracked click link.
    assert len(mail["links"]) == 6 and "/c/" not in "".join(mail["links"])
    assert "How happy are you with your last order?" in mail["text"]
    assert all(link in mail["text"] for link in mail["links"][:5])
    assert "https://mail.shop.test/c/" in mail["html"]          # the ordinary link is still tracked
    other = set(mails[contacts[1].email]["links"])
    assert not other & set(mail["links"])                       # links are personal

    four = mail["links"][3]
    page = client.get(four, headers=BROWSER)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Your answer “4” is selected below" in html
    assert re.search(r'name="q0" value="4" checked', html)
    assert "Would you recommend us?" in html and "What do you grow most?" in html
    # The answer is named as the page's choice reads: "5 — great", not the bare value.
    html = client.get(mail["links"][4], headers=BROWSER).get_data(as_text=True)
    assert "Your answer “5 — great” is selected below" in html
    db_session.rollback()
    # Opening the link records nothing (scanners open every link); the page's POST does.
    assert db_session.scalar(select(SurveyAnswer).where(SurveyAnswer.contact_id == anna.id)) is None
    assert client.post(four, data={"q0": "4"}, headers=BROWSER).status_code == 200
    db_session.rollback()
    answer = db_session.scalar(select(SurveyAnswer).where(SurveyAnswer.contact_id == anna.id))
    assert (answer.position, answer.value, answer.campaign_id) == (0, "4", campaign.id)

    # The rest of the survey on the page; a wrong value is refused and what was typed stays.
    bad = client.post(four, data={"q0": "4", "q1": "maybe", "q3": "More roses please"},
                      headers=BROWSER)
    assert bad.status_code == 422
    bad_html = bad.get_data(as_text=True)
    assert "choose one of yes, no for “Would you recommend us?”" in bad_html
    assert 'value="More roses please"' in bad_html
    done = client.post(four, data={"q0": "5", "q1": "no", "q2": "Roses",
                                   "q3": "=HYPERLINK(\"http://evil\")"}, headers=BROWSER)
    assert done.status_code == 200 and "Thanks, gardener!" in done.get_data(as_text=True)

    db_session.rollback()
    answers = dict(db_session.execute(select(SurveyAnswer.position, SurveyAnswer.value).where(
        SurveyAnswer.contact_id == anna.id)).all())
    assert answers == {0: "5", 1: "no", 2: "Roses", 3: "=HYPERLINK(\"http://evil\")"}
    events = [e.data for e in db_session.scalars(select(Event).where(
        Event.contact_id == anna.id, Event.type == EventType.SURVEY_ANSWER).order_by(Event.id))]
    assert [(e["question"], e["answer"], e["source"]) for e in events] == [
        (0, "4", "page"), (0, "5", "page"), (1, "no", "page"), (2, "Roses", "page"),
        (3, "=HYPERLINK(\"http://evil\")", "page")]

    # Segments: "answered 'no' to question 2".
    said_no = segment_sql.answered_condition(survey.id, 1, "No")
    assert list(db_session.scalars(select(Contact.id).where(said_no))) == [anna.id]
    assert list(db_session.scalars(select(Contact.id).where(
        segment_sql.answered_condition(survey.id, 1, "yes")))) == []
    assert list(db_session.scalars(select(Contact.id).where(
        segment_sql.answered_condition(survey.id, 0)))) == [anna.id]

    # A second person: yes/no and a one-click answer from a scanner records nothing.
    bob = contacts[1]
    bob_link = links_by_recipient(outbox)[bob.email]["links"][0]
    scanned = client.get(bob_link, headers={"User-Agent": "Mimecast Safe Links scanner"})
    assert scanned.status_code == 200
    assert client.head(bob_link, headers=BROWSER).status_code == 200
    db_session.rollback()
    assert db_session.scalar(select(SurveyAnswer).where(SurveyAnswer.contact_id == bob.id)) is None
    client.get(bob_link, headers=BROWSER)
    db_session.rollback()
    assert db_session.scalar(select(SurveyAnswer).where(SurveyAnswer.contact_id == bob.id)) is None
    client.post(bob_link, data={"q0": "1"}, headers=BROWSER)
    db_session.rollback()

    results = survey_results.results(db_session, survey.id)
    assert results["respondents"] == 2
    q1 = results["questions"][0]
    assert {b["label"]: b["count"] for b in q1["bars"]} == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 1}
    assert q1["average"] == 3.0
    assert results["questions"][3]["texts"][0][0] == "=HYPERLINK(\"http://evil\")"


def test_forged_altered_and_cross_purpose_links_get_a_friendly_page(
        runtime, db_session, make_contacts, make_campaign, outbox, run_worker, client) -> None:
    send_survey(runtime, db_session, make_contacts, make_campaign, n=1)
    run_worker()
    link = next(iter(links_by_recipient(outbox).values()))["links"][0]
    token = link.rsplit("/", 1)[1]
    altered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    unsub = runtime.tokens.seal(Purpose.UNSUBSCRIBE, 1, 1)
    for bad in (altered, unsub, "x" * 40, "short", "a" * 500, "%00%ff"):
        r = client.get(f"/s/{bad}", headers=BROWSER)
        assert r.status_code == 404 and "not valid" in r.get_data(as_text=True)
    # A sealed link for a message that does not exist: a clear page, no error.
    ghost = runtime.tokens.seal(Purpose.SURVEY, 987654, 0, 2)
    r = client.get(f"/s/{ghost}", headers=BROWSER)
    assert r.status_code == 404 and "This survey is not available" in r.get_data(as_text=True)
    # Test messages (send id 0) say so and record nothing.
    r = client.get(f"/s/{runtime.tokens.seal(Purpose.SURVEY, 0, 0, 1)}", headers=BROWSER)
    assert r.status_code == 200 and "test message" in r.get_data(as_text=True)
    # Posting answers to an altered link stores nothing.
    r = client.post(f"/s/{altered}", data={"q0": "3"}, headers=BROWSER)
    assert r.status_code == 404
    db_session.rollback()
    assert db_session.scalar(select(SurveyAnswer)) is None


def test_questions_lock_once_answered_and_content_needs_a_survey(db_session, make_contacts) -> None:
    from campaigns.composing.editor import save_campaign

    with pytest.raises(ValidationError, match="no survey is chosen"):
        save_campaign(db_session, {"name": "x", "subject": "s", "mjml": SURVEY_MJML, "survey_id": ""})
    db_session.rollback()
    survey = make_survey(db_session, QUESTIONS[:2], name="Short")
    topic, (contact,) = make_contacts(1)
    response = responses.SurveyResponse(survey, 1, contact, None, {})
    responses.record_answers(db_session, response, {0: "3"}, source="page")
    db_session.commit()
    # Texts may change; questions may not (the results would mix).
    survey_service.save_survey(db_session, {"name": "Short", "intro": "New intro"}, QUESTIONS[:2], survey)
    with pytest.raises(InvalidState, match="already has answers"):
        survey_service.save_survey(db_session, {"name": "Short"}, QUESTIONS[:1], survey)




def test_admin_writes_a_survey_sees_results_and_exports_safe_csv(editor, db_session, make_contacts) -> None:
    client = editor
    form_html = client.get("/admin/surveys/new").get_data(as_text=True)
    token = csrf_of(form_html)
    assert len(re.findall(r'name="q\d_prompt"', form_html)) == 5
    data = {"csrf_token": token, "name": "Spring check-in"}
    for i in range(6):
        data[f"q{i}_prompt"] = f"Question {i + 1}?"
        data[f"q{i}_kind"] = "yes_no"
    r = client.post("/admin/surveys/new", data=data)
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "at most 5 questions" in html and 'value="Spring check-in"' in html
    del data["q5_prompt"], data["q5_kind"]
    data["q2_kind"], data["q2_choices"] = "choice", "Roses\nTulips"
    r = client.post("/admin/surveys/new", data=data)
    assert r.status_code == 302
    survey_id = int(r.headers["Location"].rstrip("/").rsplit("/", 1)[1])

    topic, (contact,) = make_contacts(1)
    survey = survey_service.get_survey(db_session, survey_id)
    response = responses.SurveyResponse(survey, 7, contact, None, {})
    responses.record_answers(db_session, response, {0: "yes", 2: "Tulips"}, source="page")
    db_session.commit()
    page = client.get(f"/admin/surveys/{survey_id}").get_data(as_text=True)
    assert "1 person answered" in page and '<meter min="0" max="100" value="100"' in page
    assert '<th scope="row">Yes</th>' in page and '<th scope="row">Tulips</th>' in page   # as the recipient read them
    contact.first_name = "=cmd|' /C calc'!A0"
    db_session.commit()
    export = client.get(f"/admin/surveys/{survey_id}/answers.csv")
    csv_text = export.get_data(as_text=True)
    export.close()    # a streamed response holds its session until the server closes it
    assert contact.email in csv_text and "Tulips" in csv_text
    assert "'=cmd" in csv_text and "\n=cmd" not in csv_text and ",=cmd" not in csv_text
    assert client.get("/admin/surveys/4242").status_code == 404
    assert "Spring check-in" in client.get("/admin/campaigns/new?starter=blank").get_data(as_text=True)
