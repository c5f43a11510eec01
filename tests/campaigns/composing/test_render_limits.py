"""Template limits through the admin and the worker, and renders that never hold the database: a slow admin read
or preview cannot make a recipient's one-click unsubscribe fail or wait."""

from __future__ import annotations

import threading

from flask import g

from campaigns.composing import preview as preview_service
from campaigns.models import Contact, ContactStatus, Send
from campaigns.sending import lifecycle as sending
from campaigns.web.context import db
from mailer.tracking import Purpose
from tests.campaigns.composing.test_composer import form
from tests.campaigns.web import test_admin
from tests.helpers import fresh

admin_user, logged_in, csrf = test_admin.admin_user, test_admin.logged_in, test_admin.csrf   # shared fixtures

BODY = """<mjml><mj-body>
<mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}</mj-text>
<mj-text>{{ BAD }}</mj-text>
</mj-column></mj-section>
</mj-body></mjml>"""


def test_live_preview_refuses_a_width_bomb_with_its_line(logged_in, make_contacts) -> None:
    make_contacts(1)
    token = csrf(logged_in, "/admin/campaigns/new?starter=blank")
    for bad, message in (("{{ '%*s'|format(10**8, 'a') }}", "width or precision of 100,000,000"),
                         ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
                          "loops ran more than 100,000 times"),
                         ("{{ _links }}", "cannot be shown")):
        out = logged_in.post("/admin/campaigns/preview",
                             data=form(token, mjml=BODY.replace("{{ BAD }}", bad))).get_json()
        assert not out["ok"] and out["url"] is None
        (error,) = out["errors"]
        assert error["line"] == 4 and message in error["message"], error
    out = logged_in.post("/admin/campaigns/preview",
                         data=form(token, mjml=BODY, subject="{{ 'a' * 10**9 }}")).get_json()
    assert not out["ok"] and "subject: the template would make text of 1,000,000,000 characters" in \
        out["errors"][0]["message"]


def test_the_worker_refuses_a_message_over_the_limits_and_sends_the_others(runtime, db_session, make_contacts,
                                                                           make_campaign, outbox, run_worker) -> None:
    topic, contacts = make_contacts(3)
    # Only contacts whose name ends in 1 blow the limit: the data decides, so no check at save time can see it.
    bomb = "{% if contact.first_name[-1] == '1' %}{{ 'x' * 10**9 }}{% endif %}"
    campaign = make_campaign([topic], mjml=BODY.replace("{{ BAD }}", bomb))
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    got = sorted(m.recipients[0] for m in outbox.list())
    assert got == sorted(c.email for c in contacts if not c.first_name.endswith("1"))
    refused = fresh(db_session).scalar(Send.__table__.select().with_only_columns(Send.last_error).where(
        Send.contact_id == contacts[1].id))
    assert "line 4" in refused and "1,000,000,000 characters" in refused


def one_click(app, runtime, contact_id: int) -> int:
    """A recipient's one-click unsubscribe, from another thread (its own request, session and connection)."""
    url = "/u/" + runtime.tokens.seal(Purpose.UNSUBSCRIBE, contact_id, 0)
    answer: list[int] = []
    thread = threading.Thread(target=lambda: answer.append(
        app.test_client().post(url, data={"List-Unsubscribe": "One-Click"}).status_code))
    thread.start()
    thread.join(timeout=120)      # bounds a hang; the SQLite busy timeout (30 s) ends a blocked writer before
    assert not thread.is_alive()
    return answer[0]


def test_an_open_admin_read_does_not_hold_the_write_lock(app, runtime, db_session, make_contacts) -> None:
    _topic, contacts = make_contacts(2)
    db_session.rollback()
    with app.test_request_context("/admin/contacts", method="GET"):
        reader = db()
        assert reader.scalar(Contact.__table__.select().with_only_columns(Contact.email).limit(1))
        assert reader.in_transaction()                     # the admin read is still open...
        assert one_click(app, runtime, contacts[0].id) == 200   # ...and the unsubscribe goes through
        assert reader.in_transaction()
    assert fresh(db_session).get(Contact, contacts[0].id).status == ContactStatus.UNSUBSCRIBED
    db_session.rollback()


def test_a_preview_renders_outside_any_transaction(app, runtime, logged_in, db_session, make_contacts,
                                                  monkeypatch) -> None:
    _topic, contacts = make_contacts(2)
    db_session.rollback()
    seen = []
    real_preview = preview_service.preview

    def preview_while_a_recipient_unsubscribes(*args, **kwargs):
        seen.append(g.db.in_transaction())                 # the preview request's own session, mid-request
        seen.append(one_click(app, runtime, contacts[1].id))
        return real_preview(*args, **kwargs)

    monkeypatch.setattr(preview_service, "preview", preview_while_a_recipient_unsubscribes)
    token = csrf(logged_in, "/admin/campaigns/new?starter=blank")
    out = logged_in.post("/admin/campaigns/preview", data=form(token, mjml=BODY.replace("{{ BAD }}", ""))).get_json()
    assert out["ok"], out
    assert seen == [False, 200]
    assert fresh(db_session).get(Contact, contacts[1].id).status == ContactStatus.UNSUBSCRIBED
    db_session.rollback()
