"""Prize draws through the real app, worker and capture server: the one-click link enters only on POST (once),
eligibility and the window are enforced, the draw is verifiable from the published data (the docs' snippet
recomputes it), drawing twice changes nothing, the winners get a DKIM-signed personal mail from the owner."""

from __future__ import annotations

import csv
import datetime as dt
import email
import hashlib
import io
import json
import re
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from campaigns.accounts import audit
from campaigns.contacts import segments
from campaigns.draws import drawing
from campaigns.draws import service as draws
from campaigns.errors import InvalidState, ValidationError
from campaigns.models import AuditEntry, Contact, Draw, DrawEntry, Event, EventType, Sender, utcnow
from campaigns.queueing import Job, enqueue
from campaigns.sending import lifecycle as sending
from mailer.tracking import Purpose
from tests.helpers import csrf, fresh

ROOT = Path(__file__).resolve().parents[3]
DRAW_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}, win a garden bench!</mj-text>
<mj-button href="{{ draw_url() }}">Enter the draw</mj-button>
</mj-column></mj-section></mj-body></mjml>"""
DRAW_LINK = re.compile(r"https://mail\.shop\.test/d/[A-Za-z0-9_-]+")
BROWSER = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari"}
SCANNER = {"User-Agent": "Mimecast Safe Links scanner"}


def snippet() -> str:
    text = (ROOT / "docs" / "draws.md").read_text(encoding="utf-8")
    return re.search(r"<!-- verify-snippet -->\n```python\n(.*?)```", text, re.S).group(1)


def form(**over) -> dict:
    now = utcnow()
    data = {"name": "Summer bench draw", "prize": "A teak garden bench", "rules": "One entry per subscriber.",
            "winners_count": "1", "segment_id": "", "opens_at": (now - dt.timedelta(hours=1)).isoformat(),
            "closes_at": (now + dt.timedelta(days=7)).isoformat()}
    data.update(over)
    return data


@pytest.fixture()
def world(runtime, db_session, make_contacts, make_campaign, run_worker):
    """Four contacts (three in Berlin, one in Hamburg), a draw for the Berlin segment, and the mail with the link."""
    topic, contacts = make_contacts(4)
    contacts[3].city = "Hamburg"
    segment = segments.save_segment(db_session, {"name": "Berliners", "definition": json.dumps(
        {"match": "all", "rules": [{"field": "city", "op": "is", "value": "Berlin"}]})})
    db_session.commit()
    draw = draws.save_draw(db_session, form(segment_id=str(segment.id), winners_count="1"))
    db_session.commit()
    campaign = make_campaign([topic], mjml=DRAW_MJML)
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    return draw, contacts


def links(outbox) -> dict[str, str]:
    out = {}
    for entry in outbox.list(limit=100):
        msg = outbox.get(entry.key)
        found = DRAW_LINK.findall(msg.html)
        out[msg.recipients[0]] = found[0] if found else ""
    return out


def entries(db_session) -> list[DrawEntry]:
    fresh(db_session)
    out = list(db_session.scalars(select(DrawEntry).order_by(DrawEntry.id)))
    db_session.rollback()
    return out


def close_window(db_session, draw_id: int) -> None:
    """Time passes: the window closed two minutes ago (the draw waits a minute after closing)."""
    db_session.execute(update(Draw).where(Draw.id == draw_id).values(
        closes_at=utcnow() - dt.timedelta(minutes=2)))
    db_session.commit()


def test_one_click_entry_only_on_post_once_eligible_and_in_the_window(
        world, runtime, client, db_session, outbox) -> None:
    draw, contacts = world
    mails = links(outbox)
    assert all(mails.values()) and len(set(mails.values())) == 4          # a personal link in every mail
    link = mails[contacts[0].email]
    assert "/c/" not in link                                               # not wrapped in click tracking
    # Scanners and people opening the link change nothing.
    for method in ("HEAD", "GET"):
        for headers in (SCANNER, BROWSER):
            assert client.open(link, method=method, headers=headers).status_code == 200
    page = client.get(link, headers=BROWSER).get_data(as_text=True)
    assert "A teak garden bench" in page and "Enter the draw" in page and 'method="post"' in page
    assert entries(db_session) == []
    score_before = fresh(db_session).get(Contact, contacts[0].id).engagement_score or 0.0
    db_session.rollback()

    r = client.post(link, headers=BROWSER)
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "You are in the draw" in html
    (entry,) = entries(db_session)
    assert entry.contact_id == contacts[0].id and entry.source == "mail" and entry.ref in html
    again = client.post(link, headers=BROWSER).get_data(as_text=True)
    assert "You have entered already" in again and entry.ref in again
    assert len(entries(db_session)) == 1
    fresh(db_session)
    events = db_session.scalars(select(Event).where(Event.contact_id == contacts[0].id,
                                                    Event.type == EventType.DRAW_ENTRY)).all()
    assert len(events) == 1 and events[0].data["draw_id"] == draw.id
    assert db_session.get(Contact, contacts[0].id).engagement_score == pytest.approx(score_before + 3.0, abs=0.01)
    db_session.rollback()

    # Not in the segment (Hamburg): told on the page, refused on POST with the reason, nothing recorded.
    told = client.get(mails[contacts[3].email], headers=BROWSER).get_data(as_text=True)
    assert "selected subscribers only" in told and 'method="post"' not in told
    r = client.post(mails[contacts[3].email], headers=BROWSER)
    assert r.status_code == 409 and "selected subscribers only" in r.get_data(as_text=True)
    # Unsubscribed since the mail: refused too.
    db_session.execute(update(Contact).where(Contact.id == contacts[2].id).values(status="unsubscribed"))
    db_session.commit()
    assert client.post(mails[contacts[2].email], headers=BROWSER).status_code == 409
    assert len(entries(db_session)) == 1

    # A forged or altered token is a 404 before the database is read; a test message's link enters nobody.
    assert client.post(link[:-2] + ("AA" if not link.endswith("AA") else "BB")).status_code == 404
    test_page = client.post("/d/" + runtime.tokens.seal(Purpose.DRAW, draw.id, 0, 0), headers=BROWSER)
    assert test_page.status_code == 200 and "This was a test message" in test_page.get_data(as_text=True)
    assert len(entries(db_session)) == 1

    # The window closes: entering is refused, the entrant's confirmation still shows.
    close_window(db_session, draw.id)
    r = client.post(mails[contacts[1].email], headers=BROWSER)
    assert r.status_code == 409 and "closed" in r.get_data(as_text=True)
    assert "You have entered already" in client.post(link, headers=BROWSER).get_data(as_text=True)
    assert len(entries(db_session)) == 1


def enter_all(client, db_session, outbox, contacts) -> list[DrawEntry]:
    mails = links(outbox)
    for c in contacts:
        assert client.post(mails[c.email], headers=BROWSER).status_code == 200
    return entries(db_session)


def test_draw_is_verifiable_from_the_published_data_idempotent_and_winners_get_mail_from_the_owner(
        world, editor, db_session, outbox, run_worker, tmp_path) -> None:
    draw, contacts = world
    owner = Sender(name="Anna Becker", email="anna@shop.test", title="Owner", reply_to="anna@shop.test")
    db_session.add(owner)
    db_session.commit()
    made = enter_all(editor, db_session, outbox, contacts[:3])
    assert len(made) == 3
    page = f"/admin/draws/{draw.id}"
    # Before the window closes the draw button refuses (and the page does not offer it).
    assert "Draw the winners" not in editor.get(page).get_data(as_text=True)
    r = editor.post(f"{page}/draw", data={"csrf_token": csrf(editor, page)})
    assert r.status_code == 302
    assert "can only be made after" in editor.get(page).get_data(as_text=True)
    assert fresh(db_session).get(Draw, draw.id).drawn_at is None
    db_session.rollback()

    before = editor.get(f"/draws/{draw.public_id}/data.json").get_json()
    assert before["seed"] is None and before["winners"] == [] and before["state"] == "open"
    assert before["entries"] == sorted(e.ref for e in made)
    public_html = editor.get(f"/draws/{draw.public_id}").get_data(as_text=True)
    assert before["seed_hash"] in public_html
    assert not any(c.email in public_html or c.email in json.dumps(before) for c in contacts)   # no personal data

    close_window(db_session, draw.id)
    assert "Draw the winners" in editor.get(page).get_data(as_text=True)
    assert editor.post(f"{page}/draw", data={"csrf_token": csrf(editor, page)}).status_code == 302
    drawn = fresh(db_session).get(Draw, draw.id)
    drawn_at = drawn.drawn_at
    winners = [e.ref for e in drawing.winner_entries(db_session, draw.id)]
    db_session.rollback()
    assert len(winners) == 1 and drawn_at is not None
    # Pressing again (or the job running) changes nothing.
    assert editor.post(f"{page}/draw", data={"csrf_token": csrf(editor, page)}).status_code == 302
    enqueue(editor.application.extensions["rapport"].queue, Job.DRAW_DUE)
    run_worker()
    assert fresh(db_session).get(Draw, draw.id).drawn_at == drawn_at
    assert [e.ref for e in drawing.winner_entries(db_session, draw.id)] == winners
    assert db_session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.action == str(audit.Action.DRAW_DRAW))) == 1
    db_session.rollback()

    after = editor.get(f"/draws/{draw.public_id}/data.json").get_json()
    assert after["seed_hash"] == before["seed_hash"]                           # committed before, unchanged
    assert hashlib.sha256(bytes.fromhex(after["seed"])).hexdigest() == after["seed_hash"]
    assert after["entries"] == before["entries"] and after["winners"] == winners and after["state"] == "drawn"
    assert after["seed"] in editor.get(f"/draws/{draw.public_id}").get_data(as_text=True)
    # The documented stand-alone script recomputes the same winners from the published JSON.
    saved = tmp_path / "draw.json"
    saved.write_text(json.dumps(after))
    script = tmp_path / "verify.py"
    script.write_text(snippet())
    out = subprocess.run([sys.executable, str(script), str(saved)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["verified:", *winners]
    # …and notices a tampered result.
    saved.write_text(json.dumps({**after, "winners": [r for r in after["entries"] if r not in winners][:1]}))
    assert subprocess.run([sys.executable, str(script), str(saved)], capture_output=True).returncode != 0

    # The entrant's confirmation shows the reference that is in the public list.
    winner = fresh(db_session).scalar(select(DrawEntry).where(DrawEntry.ref == winners[0]))
    winner_contact = db_session.get(Contact, winner.contact_id)
    winner_email, winner_name = winner_contact.email, winner_contact.first_name
    db_session.rollback()
    confirmation = editor.post(links(outbox)[winner_email], headers=BROWSER).get_data(as_text=True)
    assert winners[0] in confirmation and "one of the winners" in confirmation

    # The CSV export has every entry, with contact and winner rank; it is audited.
    csv_text = editor.get(f"{page}/entries.csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert len(rows) == 3 and {r["reference"] for r in rows} == set(after["entries"])
    assert [(r["reference"], r["email"]) for r in rows if r["winner_rank"] == "1"] == [(winners[0], winner_email)]

    # Tell the winners: one personal mail from the owner, through the normal (DKIM-signed) send path.
    before_count = len(outbox.list(limit=100))
    r = editor.post(f"{page}/notify", data={"csrf_token": csrf(editor, page), "sender_id": str(owner.id),
                                            "subject": "You won the bench!",
                                            "message": "Congratulations {{ not template }}.\n\nReply with an address."})
    assert r.status_code == 302
    run_worker()
    new = [m for m in (outbox.get(e.key) for e in outbox.list(limit=100)) if "Enter the draw" not in (m.html or "")]
    assert [list(m.recipients) for m in new] == [[winner_email]]
    msg = email.message_from_bytes(new[0].raw, policy=policy.default)
    assert msg["From"].addresses[0].addr_spec == "anna@shop.test" and msg["Subject"] == "You won the bench!"
    assert msg["DKIM-Signature"] and "d=shop.test" in msg["DKIM-Signature"].replace(" ", "")
    html = msg.get_body(("html",)).get_content()
    assert f"Dear {winner_name}" in html and "Congratulations {{ not template }}." in html
    # Once only.
    editor.post(f"{page}/notify", data={"csrf_token": csrf(editor, page), "sender_id": str(owner.id),
                                        "subject": "Again", "message": "Again"})
    run_worker()
    assert len(outbox.list(limit=100)) == before_count + 1
    assert "told on" in editor.get(page).get_data(as_text=True)
    timeline = editor.get(f"/admin/contacts/{winner.contact_id}").get_data(as_text=True)
    assert "entered the prize draw “Summer bench draw” via mail" in timeline


def test_the_scheduled_job_draws_closed_draws_and_an_empty_draw_has_no_winners(
        runtime, db_session, run_worker) -> None:
    draw = draws.save_draw(db_session, form(name="Nobody came"))
    db_session.commit()
    with pytest.raises(InvalidState, match="only be made after"):
        drawing.draw(db_session, draw, actor="someone")
    db_session.rollback()
    # Closed only seconds ago: the last entries may still be landing, neither the button nor the job draws yet.
    db_session.execute(update(Draw).where(Draw.id == draw.id).values(closes_at=utcnow() - dt.timedelta(seconds=20)))
    db_session.commit()
    with pytest.raises(InvalidState, match="a minute after"):
        drawing.draw(db_session, fresh(db_session).get(Draw, draw.id), actor="someone")
    db_session.rollback()
    enqueue(runtime.queue, Job.DRAW_DUE)
    run_worker()
    assert fresh(db_session).get(Draw, draw.id).drawn_at is None
    db_session.rollback()
    close_window(db_session, draw.id)
    enqueue(runtime.queue, Job.DRAW_DUE)
    run_worker()
    done = fresh(db_session).get(Draw, draw.id)
    assert done.drawn_at is not None and done.drawn_by == "scheduled draw"
    assert drawing.winner_entries(db_session, draw.id) == []


def test_bad_draw_forms_are_refused_with_clear_messages(db_session) -> None:
    with pytest.raises(ValidationError, match="name"):
        draws.save_draw(db_session, form(name=""))
    with pytest.raises(ValidationError, match="close after it opens"):
        draws.save_draw(db_session, form(closes_at=(utcnow() - dt.timedelta(days=1)).isoformat()))
    with pytest.raises(ValidationError, match="close in the future"):
        draws.save_draw(db_session, form(opens_at=(utcnow() - dt.timedelta(days=3)).isoformat(),
                                         closes_at=(utcnow() - dt.timedelta(days=1)).isoformat()))
    with pytest.raises(ValidationError, match="1 to 100"):
        draws.save_draw(db_session, form(winners_count="0"))
    with pytest.raises(ValidationError, match="segment does not exist"):
        draws.save_draw(db_session, form(segment_id="999"))
    with pytest.raises(ValidationError, match="date and time"):
        draws.save_draw(db_session, form(opens_at="next tuesday"))
    draw = draws.save_draw(db_session, form())
    assert len(draw.seed) == 64 and draw.seed_hash == hashlib.sha256(bytes.fromhex(draw.seed)).hexdigest()
    seed = draw.seed
    draws.save_draw(db_session, form(prize="Two benches"), draw)
    assert draw.seed == seed                    # editing never changes the committed seed


def test_ranking_is_the_documented_function() -> None:
    seed = "00" * 32
    refs = ["a1", "b2", "c3", "d4"]
    key = bytes(32)
    import hmac
    expected = sorted(refs, key=lambda r: hmac.new(key, r.encode(), hashlib.sha256).hexdigest())[:2]
    assert drawing.winners(seed, refs, 2) == expected
    assert drawing.winners(seed, list(reversed(refs)), 2) == expected     # order of the list does not matter


def test_a_subscriber_asks_for_the_entry_link_on_the_public_page_and_confirms_it(
        runtime, db_session, make_contacts, client, outbox, run_worker) -> None:
    _topic, contacts = make_contacts(2)
    db_session.execute(update(Contact).where(Contact.id == contacts[1].id).values(status="unsubscribed"))
    db_session.commit()
    draw = draws.save_draw(db_session, form())
    db_session.commit()
    page = f"/draws/{draw.public_id}"
    answers = set()
    for address in (contacts[0].email, contacts[1].email, "nobody@example.com", contacts[0].email.upper()):
        r = client.post(page, data={"email": address}, headers=BROWSER)
        assert r.status_code == 200
        answers.add(re.sub(r"\s+", " ", r.get_data(as_text=True)))
    assert len(answers) == 1 and "entry link is on its way" in answers.pop()   # no hint who is on the list
    bad = client.post(page, data={"email": "not an address"}, headers=BROWSER)
    assert bad.status_code == 422 and "not a valid email address" in bad.get_data(as_text=True)
    run_worker()
    mails = [outbox.get(e.key) for e in outbox.list(limit=100)]
    assert [list(m.recipients) for m in mails] == [[contacts[0].email]]      # once, only to the subscriber
    (link,) = set(DRAW_LINK.findall(mails[0].html))
    assert "DKIM-Signature" in {name for name, _v in mails[0].headers}
    for method in ("HEAD", "GET"):
        assert client.open(link, method=method, headers=SCANNER).status_code == 200
    assert entries(db_session) == []
    assert "You are in the draw" in client.post(link, headers=BROWSER).get_data(as_text=True)
    (entry,) = entries(db_session)
    assert entry.contact_id == contacts[0].id and entry.source == "page"
    # Asking again after entering sends nothing more.
    client.post(page, data={"email": contacts[0].email}, headers=BROWSER)
    run_worker()
    assert len(outbox.list(limit=100)) == 1


def test_admin_creates_and_edits_a_draw_and_bad_input_keeps_what_was_typed(editor, db_session) -> None:
    url = "/admin/draws/new"
    data = {"csrf_token": csrf(editor, url), **form(name="Autumn draw", rules="Subscribers only.")}
    bad = editor.post(url, data={**data, "winners_count": "0"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "1 to 100" in html and "Subscribers only." in html and "Autumn draw" in html
    assert fresh(db_session).scalar(select(func.count()).select_from(Draw)) == 0
    db_session.rollback()
    r = editor.post(url, data=data)
    assert r.status_code == 302
    draw = fresh(db_session).scalar(select(Draw))
    seed_hash, draw_id = draw.seed_hash, draw.id
    db_session.rollback()
    page = editor.get(r.location).get_data(as_text=True)
    assert seed_hash in page and "draw_url(" in page and "Export entries" in page
    assert draw.seed not in page                              # the seed stays secret until the draw
    edit = f"/admin/draws/{draw_id}/edit"
    r = editor.post(edit, data={**data, "csrf_token": csrf(editor, edit), "prize": "Two pumpkins"})
    assert r.status_code == 302
    again = fresh(db_session).get(Draw, draw_id)
    assert again.prize == "Two pumpkins" and again.seed_hash == seed_hash
    db_session.rollback()
    assert "Autumn draw" in editor.get("/admin/draws").get_data(as_text=True)
    assert "Autumn draw" in editor.get(f"/draws/{again.public_id}").get_data(as_text=True)


def test_a_campaign_using_draw_url_while_no_draw_is_open_is_refused_with_the_reason(db_session) -> None:
    from campaigns.composing.editor import save_campaign, validate

    campaign = save_campaign(db_session, {"name": "Draw mail", "subject": "Win", "mjml": DRAW_MJML})
    with pytest.raises(ValidationError, match="no prize draw is open"):
        validate(campaign, db_session)


def test_an_erased_entrant_leaves_the_draw_verifiable_and_the_gdpr_export_lists_entries(
        runtime, db_session, make_contacts, tmp_path) -> None:
    from campaigns.contacts.exports import erase_contact, gdpr_export

    _topic, contacts = make_contacts(3)
    draw = draws.save_draw(db_session, form(winners_count="2"))
    for c in contacts:
        draws.enter(db_session, draw, c.id)
    db_session.commit()
    mine = gdpr_export(db_session, contacts[0].id)["draw_entries"]
    assert [(e["draw_id"], e["source"]) for e in mine] == [(draw.id, "mail")]
    close_window(db_session, draw.id)
    drawing.draw(db_session, fresh(db_session).get(Draw, draw.id), actor="test")
    db_session.commit()
    before = drawing.published(db_session, fresh(db_session).get(Draw, draw.id))
    for c in contacts:
        erase_contact(db_session, c.id, by="test")
    db_session.commit()
    after = drawing.published(db_session, fresh(db_session).get(Draw, draw.id))
    assert after["entries"] == before["entries"] and after["winners"] == before["winners"]
    assert {e.contact_id for e in entries(db_session)} == {None}
    saved = tmp_path / "draw.json"
    saved.write_text(json.dumps(after))
    script = tmp_path / "verify.py"
    script.write_text(snippet())
    assert subprocess.run([sys.executable, str(script), str(saved)], capture_output=True).returncode == 0
    rows = list(csv.DictReader(io.StringIO("".join(drawing.export_csv(fresh(db_session), draw.id)))))
    assert len(rows) == 3 and {r["email"] for r in rows} == {""}
