"""Post-purchase automations in the admin: the order trigger and its filters in the form (bad input kept with a
clear message), the per-order runs on the automation page, and the starter that sends correct mail out of the box
(thank-you, "How did it go?" with its survey, "Leave a review") through the real API, worker and capture server."""

from __future__ import annotations

import datetime as dt
import html

from sqlalchemy import select

from campaigns.automations import runs as auto
from campaigns.composing.editor import save_campaign
from campaigns.models import Automation, Campaign, CampaignKind, utcnow
from tests.campaigns.api.conftest import auth
from tests.campaigns.automations.test_automations_admin import csrf, login
from tests.helpers import fresh

THANKS = """<mjml><mj-body><mj-section><mj-column><mj-text>Thanks {{ contact.first_name }}</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


def test_order_trigger_and_filters_in_the_form_and_orders_on_its_page(
        client, db_session, runtime, api_key, work, outbox) -> None:
    thanks = save_campaign(db_session, {"name": "Thanks", "kind": "transactional", "subject": "Thanks",
                                        "mjml": THANKS, "all_contacts": "1"})
    follow = save_campaign(db_session, {"name": "Follow", "kind": "nurture", "subject": "How was it",
                                        "mjml": THANKS, "all_contacts": "1"})
    db_session.commit()
    key = api_key
    login(client, db_session)
    page = client.get("/admin/automations/new").get_data(as_text=True)
    assert "An order placed" in page and 'name="min_amount"' in page and 'name="after_1"' in page
    token = csrf(client, "/admin/automations/new")
    base = {"csrf_token": token, "name": "After orders", "trigger": "order", "template_0": str(thanks.id),
            "after_0": "0", "template_1": str(follow.id), "after_1": "3d", "delay_1": "9"}
    for bad, message in (({"min_amount": "ten"}, "The minimum amount is an amount"),
                         ({"min_amount": "90", "max_amount": "20"}, "above the maximum"),
                         ({"after_1": "soon"}, "as hours or days"),
                         ({"after_1": "0"}, "fall at the same time")):
        r = client.post("/admin/automations/new", data={**base, **bad})
        body = html.unescape(r.get_data(as_text=True))
        assert r.status_code == 400 and message in body, bad
        assert f'value="{next(iter(bad.values()))}"' in body                 # what was typed is kept
    r = client.post("/admin/automations/new", data={**base, "min_amount": "20", "product_tag": "Plants",
                                                    "first_order_only": "1"})
    assert r.status_code == 302
    a = fresh(db_session).scalar(select(Automation).where(Automation.name == "After orders"))
    assert (a.min_amount, a.max_amount, a.product_tag, a.first_order_only) == (20, None, "plants", True)
    assert [(s.delay_days, s.delay_hours) for s in a.steps] == [(0, 0), (3, 0)]
    assert client.post(f"/admin/automations/{a.id}/activate", data={"csrf_token": token}).status_code == 302
    page = html.unescape(client.get(f"/admin/automations/{a.id}").get_data(as_text=True))
    assert "after an order (of at least 20.00, with product tag “plants”, first orders only)" in page
    assert 'value="3d"' in page and "No orders yet" in page

    for ext, amount, tags in (("W-1", "25.00", ["plants"]), ("W-2", "25.00", ["tools"]), ("W-3", "5", ["plants"])):
        r = client.post("/api/v1/orders", headers=auth(key), json={
            "email": f"{ext.lower()}@example.com", "amount": amount, "external_id": ext, "reference": f"#{ext}",
            "tags": tags})
        assert r.status_code == 201
    db_session.rollback()
    auto.run_due(runtime, utcnow())
    work()
    assert [m.recipients[0] for m in outbox.list()] == ["w-1@example.com"]
    page = html.unescape(client.get(f"/admin/automations/{a.id}").get_data(as_text=True))
    orders = page[page.index("<h2>Orders</h2>"):page.index("<h2>Runs</h2>")]
    assert "#W-1" in orders and "w-1@example.com" in orders and "#W-2" not in orders and "#W-3" not in orders
    assert ">sent</span> <small class=\"muted\">at once" in orders and ">due</span>" in orders
    listing = client.get("/admin/automations").get_data(as_text=True)
    assert "After orders" in listing


def test_the_starter_sends_thank_you_survey_and_review_out_of_the_box(
        client, db_session, runtime, api_key, work, outbox) -> None:
    key = api_key
    login(client, db_session)
    token = csrf(client, "/admin/automations")
    r = client.post("/admin/automations/post-purchase", data={"csrf_token": token, "name": "Post-purchase",
                                                              "review_url": "javascript:alert(1)"})
    assert r.status_code == 302
    assert "address of your review page" in html.unescape(client.get("/admin/automations").get_data(as_text=True))
    assert fresh(db_session).scalar(select(Automation.id)) is None                # nothing half-made
    r = client.post("/admin/automations/post-purchase", data={
        "csrf_token": token, "name": "Post-purchase", "review_url": "https://shop.example/p/reviews?from=mail&x=1"})
    assert r.status_code == 302
    a = fresh(db_session).scalar(select(Automation).where(Automation.name == "Post-purchase"))
    assert not a.active and [(s.delay_days, s.template.kind) for s in a.steps] == [
        (0, CampaignKind.TRANSACTIONAL), (3, CampaignKind.NURTURE), (14, CampaignKind.NURTURE)]
    assert a.steps[1].template.survey_id is not None
    assert "https://shop.example/p/reviews?from=mail&amp;x=1" in a.steps[2].template.mjml
    assert client.post(f"/admin/automations/{a.id}/activate", data={"csrf_token": token}).status_code == 302
    # A second starter gets its own names.
    client.post("/admin/automations/post-purchase", data={"csrf_token": token, "name": "Post-purchase",
                                                          "review_url": "https://shop.example/reviews"})
    assert fresh(db_session).scalar(select(Automation.id).where(Automation.name == "Post-purchase (2)"))

    db_session.rollback()
    r = client.post("/api/v1/orders", headers=auth(key), json={
        "email": "kim@example.com", "amount": "30", "external_id": "S-1", "accepts_marketing": True,
        "first_name": "Kim"})
    assert r.status_code == 201
    db_session.rollback()
    now = utcnow()
    for at in (now, now + dt.timedelta(days=3, minutes=1), now + dt.timedelta(days=14, minutes=1)):
        auto.run_due(runtime, at)
        work()
    subjects = [m.subject for m in sorted(outbox.list(), key=lambda m: m.key)]
    assert subjects == ["Thank you for your order", "Kim, how did your order go?", "Would you review your order?"]
    survey = outbox.get(sorted(e.key for e in outbox.list())[1]).html
    assert "How did your order go?" in survey and survey.count("/s/") >= 5            # five one-click answers
    review = outbox.get(sorted(e.key for e in outbox.list())[2]).html
    assert "Write a review" in review
    run_campaigns = fresh(db_session).scalars(select(Campaign).where(Campaign.name.like("Post-purchase · %"))).all()
    assert len(run_campaigns) == 3
