"""Letters by post: who is eligible, the contact policy, the record per contact, the PDF page by page, labels, CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from campaigns import storage
from campaigns.contacts.exports import erase_contact, gdpr_export
from campaigns.coupons.codes import generate_codes
from campaigns.errors import InvalidState, ValidationError
from campaigns.models import (
    Campaign,
    CouponCode,
    CouponPool,
    Event,
    EventType,
    PolicyConfig,
    PolicyLedger,
    PostLetter,
    PostOptOut,
    PostRun,
    Send,
    SendStatus,
)
from campaigns.post import addresses, runs
from tests.helpers import fresh


def _files(runtime, run_id: int) -> dict[str, bytes]:
    store = storage.for_settings(runtime.settings)
    out = {}
    for which in runs.FILES:
        with store.open(runs.file_key(run_id, which)) as f:
            out[which] = f.read()
    return out


def _print(db_session, runtime, campaign, **data: str) -> PostRun:
    run = runs.create_run(db_session, campaign, {"layout": "din5008", "label_sheet": "L7160",
                                                 "return_address": "Green Thumb, Lindenstraße 1, 10115 Berlin",
                                                 **data}, created_by="mara@shop.test")
    db_session.commit()
    run_id = run.id
    fresh(db_session)
    runs.run(runtime, run_id)
    return fresh(db_session).get(PostRun, run_id)


def test_letters_go_to_exactly_the_eligible_contacts_and_are_recorded(db_session, runtime, post_audience,
                                                                      post_campaign) -> None:
    topic, people = post_audience
    addresses.set_no_post(db_session, people["nopost"].id, True, source="test")
    db_session.commit()
    campaign = post_campaign(topic)
    run = _print(db_session, runtime, campaign)
    assert run.status == "done", run.error
    assert (run.letters, run.held, run.no_address, run.no_post) == (3, 1, 2, 1)

    by_id = {p.id: key for key, p in people.items()}
    letters = db_session.scalars(select(PostLetter).order_by(PostLetter.page)).all()
    # Sorted for the mailing house: by country, then postal code.
    assert [by_id[x.contact_id] for x in letters] == ["anna", "oguz", "gwen"]
    sends = dict(db_session.execute(select(Send.contact_id, Send.status)).all())
    assert {by_id[c]: s for c, s in sends.items()} == {"anna": "sent", "oguz": "sent", "gwen": "sent",
                                                        "paused": "skipped"}
    held = db_session.scalar(select(Send).where(Send.status == SendStatus.SKIPPED))
    assert held.reason == "paused" and "not printed" in held.last_error
    events = db_session.execute(select(Event.contact_id, Event.occurred_at).where(
        Event.type == EventType.LETTER)).all()
    assert sorted(by_id[c] for c, _at in events) == ["anna", "gwen", "oguz"]
    assert db_session.scalar(select(func.count()).select_from(PolicyLedger)) == 3      # a letter is a touch
    campaign = db_session.get(Campaign, campaign.id)
    assert (campaign.status, campaign.sent, campaign.skipped) == ("finished", 3, 1)
    assert campaign.status_reason == f"sent as post (print run {run.id})"
    with pytest.raises(InvalidState):                     # once printed, neither printed again nor mailed
        runs.create_run(db_session, campaign, {"layout": "din5008", "label_sheet": "L7160"}, created_by="x")


def test_each_page_has_the_right_name_address_and_code(db_session, runtime, post_audience,
                                                        post_campaign) -> None:
    topic, people = post_audience
    pool = CouponPool(name="Spring", value_description="15% off your next order",
                      expires_on=dt.date.today() + dt.timedelta(days=60))
    db_session.add(pool)
    db_session.flush()
    generate_codes(db_session, pool.id, 10, prefix="GT")
    db_session.commit()
    campaign = post_campaign(topic, pool.id)
    run = _print(db_session, runtime, campaign, layout="us10", label_sheet="5160")
    assert run.status == "done", run.error
    files = _files(runtime, run.id)
    pages = PdfReader(io.BytesIO(files["letters"])).pages
    letters = db_session.scalars(select(PostLetter).order_by(PostLetter.page)).all()
    assert len(pages) == len(letters) == 4                # anna, oguz, nopost (no choice made here), gwen
    names = {p.id: p for p in people.values()}
    for page, letter in zip(pages, letters, strict=True):
        text = page.extract_text()
        contact = names[letter.contact_id]
        assert contact.full_name in text and contact.address_line1 in text
        assert contact.city in text or contact.city.upper() in text
        assert f"Dear {contact.first_name}," in text and f"A note for you, {contact.first_name}" in text
        code = db_session.scalar(select(CouponCode.code).where(CouponCode.contact_id == contact.id))
        assert code and letter.coupon_code == code and f"Your code: {code}" in text
        assert f"Your code {code} gives you 15% off" in text
        assert "Lindenstraße 1" in text                   # the return address
        others = [p for p in names.values() if p.id != contact.id and p.address_line1 != contact.address_line1]
        assert not any(o.full_name in text for o in others)
    assert "UNITED STATES" not in pages[3].extract_text()     # posted in the US: no country line
    assert "GERMANY" in pages[0].extract_text()               # abroad from the US layout's home

    labels = PdfReader(io.BytesIO(files["labels"]))
    assert len(labels.pages) == 1
    label_text = labels.pages[0].extract_text()
    assert all(names[x.contact_id].full_name in label_text for x in letters)
    rows = list(csv.DictReader(io.StringIO(files["csv"].decode("utf-8-sig"))))
    assert [int(r["contact_id"]) for r in rows] == [x.contact_id for x in letters]
    assert [r["coupon_code"] for r in rows] == [x.coupon_code for x in letters]
    assert rows[3]["address_block"] == "Gwen Gärtner | 12 Elm Street | SPRINGFIELD IL 62701"


def test_the_contact_policy_counts_letters_like_mail(db_session, runtime, post_audience,
                                                     post_campaign) -> None:
    topic, _people = post_audience
    first = _print(db_session, runtime, post_campaign(topic))
    assert first.letters == 4
    db_session.add(PolicyConfig(id=1, enabled=True, window_days=30, ratio_marketing=1, ratio_nurture=3,
                                min_nurture_before_marketing=0, marketing_per_week=5, messages_per_day=1,
                                hold_days=14))
    db_session.commit()
    second = _print(db_session, runtime, post_campaign(topic))    # the same day: the daily cap holds everyone
    assert (second.status, second.letters, second.held) == ("done", 0, 5)
    reasons = db_session.scalars(select(Send.reason).where(Send.campaign_id == second.campaign_id)).all()
    assert sorted(reasons) == ["daily-total"] * 4 + ["paused"]


def test_a_run_needs_a_printable_draft(db_session, post_audience, post_campaign) -> None:
    topic, _people = post_audience
    campaign = post_campaign(topic)
    good = {"layout": "din5008", "label_sheet": "L7160"}
    for data, message in (({"layout": "a3", "label_sheet": "L7160"}, "layout"),
                          ({**good, "qr_url": "javascript:alert(1)"}, "web address"),
                          ({**good, "return_address": "\n".join(["x"] * 6)}, "5 lines")):
        with pytest.raises(ValidationError, match=message):
            runs.create_run(db_session, campaign, data, created_by="x")
    pool = CouponPool(name="Tiny", value_description="5 € off", expires_on=dt.date.today())
    db_session.add(pool)
    db_session.flush()
    generate_codes(db_session, pool.id, 2)
    campaign.coupon_pool_id = pool.id
    with pytest.raises(ValidationError, match="2 free codes for 5 letters"):
        runs.create_run(db_session, campaign, good, created_by="x")
    campaign.coupon_pool_id = None
    runs.create_run(db_session, campaign, good, created_by="x")
    with pytest.raises(InvalidState, match="already being printed"):
        runs.create_run(db_session, campaign, good, created_by="x")


def test_no_post_choice_gdpr_export_and_erasure(db_session, runtime, post_audience, post_campaign) -> None:
    topic, people = post_audience
    anna = people["anna"]
    assert addresses.set_no_post(db_session, anna.id, True, source="test")
    assert not addresses.set_no_post(db_session, anna.id, True, source="test")
    assert addresses.set_no_post(db_session, anna.id, False, source="test")
    db_session.commit()
    _print(db_session, runtime, post_campaign(topic))
    addresses.set_no_post(db_session, anna.id, True, source="test")
    db_session.commit()
    exported = gdpr_export(db_session, anna.id)
    assert exported["no_post"] is True and len(exported["letters"]) == 1
    erase_contact(db_session, anna.id)
    for model in (PostLetter, PostOptOut):
        assert db_session.scalar(select(func.count()).select_from(model).where(model.contact_id == anna.id)) == 0


def test_a_failed_run_is_tried_again_without_choosing_twice(db_session, runtime, post_audience, post_campaign,
                                                            monkeypatch) -> None:
    topic, _people = post_audience
    real = runs.render.letters_pdf

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(runs.render, "letters_pdf", broken)
    with pytest.raises(OSError):
        _print(db_session, runtime, post_campaign(topic))
    run = fresh(db_session).scalar(select(PostRun))
    assert (run.status, run.error, run.letters) == ("failed", "the print run stopped: OSError", 4)
    assert runs.run(runtime, run.id) == {"letters": 0}          # a failed run stays failed until tried again
    monkeypatch.setattr(runs.render, "letters_pdf", real)
    runs.retry(db_session, run)
    db_session.commit()
    assert run.status == "rendering"                            # its letters were chosen and recorded before
    runs.run(runtime, run.id)
    run = fresh(db_session).get(PostRun, run.id)
    assert (run.status, run.letters, run.rendered, run.error) == ("done", 4, 4, "")
    assert db_session.scalar(select(func.count()).select_from(PostLetter)) == 4
    assert len(PdfReader(io.BytesIO(_files(runtime, run.id)["letters"])).pages) == 4
    with pytest.raises(InvalidState):
        runs.retry(db_session, run)
