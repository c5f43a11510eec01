"""Post through the admin and the worker: start a print run, follow its progress, download the files; the no-post
choice in the preference center and on the contact page; one page rendered to PNG for people to look at."""

from __future__ import annotations

import io
from pathlib import Path

import pypdfium2
from pypdf import PdfReader
from sqlalchemy import select

from campaigns.models import LabelSheet, PostLayout, PostOptOut, PostRun
from campaigns.post import render
from mailer.tracking import Purpose
from tests.helpers import csrf, fresh

SCREENSHOTS = Path(__file__).resolve().parents[3] / "artifacts" / "screenshots"


def test_print_run_through_the_admin_and_the_worker(editor, db_session, post_audience, post_campaign,
                                                    work) -> None:
    topic, people = post_audience
    campaign = post_campaign(topic)
    page = f"/admin/campaigns/{campaign.id}/post"
    html = editor.get(page).get_data(as_text=True)
    assert "with a complete postal address" in html and "Print 5 letters" in html
    assert f'href="{page}"' in editor.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    r = editor.post(page, data={"csrf_token": csrf(editor, page), "layout": "card-a6", "label_sheet": "L7160",
                                "return_address": "Green Thumb\nLindenstraße 1\n10115 Berlin",
                                "qr_url": "https://shop.test/redeem?code={code}"})
    assert r.status_code == 303, r.get_data(as_text=True)
    run_page = r.headers["Location"]
    assert "Waiting for a worker" in editor.get(run_page).get_data(as_text=True)
    assert editor.get(f"{run_page}/letters").status_code == 404          # nothing to download yet
    work()
    state = editor.get(f"{run_page}/status").get_json()
    assert state == {"status": "done", "letters": 4, "rendered": 4, "held": 1, "no_address": 2, "no_post": 0,
                     "error": ""}
    assert "Print file (PDF)" in editor.get(run_page).get_data(as_text=True)
    pdf = editor.get(f"{run_page}/letters")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    reader = PdfReader(io.BytesIO(pdf.get_data()))
    assert len(reader.pages) == 4 and "Scan me" in reader.pages[0].extract_text()
    assert editor.get(f"{run_page}/labels").mimetype == "application/pdf"
    assert editor.get(f"{run_page}/csv").get_data().startswith(b"\xef\xbb\xbfpage,contact_id")
    assert editor.get(f"{run_page}/other").status_code == 404
    r = editor.post(f"{run_page}/retry", data={"csrf_token": csrf(editor, run_page)}, follow_redirects=True)
    assert "Only a failed print run can be tried again." in r.get_data(as_text=True)
    campaign_page = editor.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    assert "sent as post" in campaign_page and "Print runs" in campaign_page
    assert editor.get(f"/admin/campaigns/{campaign.id}/report").status_code == 200
    timeline = editor.get(f"/admin/contacts/{people['anna'].id}").get_data(as_text=True)
    assert "ev-letter" in timeline and campaign.name in timeline
    # The page as a person sees it (ignored by git, like the browser tests' screenshots).
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    image = pypdfium2.PdfDocument(pdf.get_data())[0].render(scale=2).to_pil()
    image.save(SCREENSHOTS / "post-card-a6.png")
    assert image.size[0] > image.size[1] and image.convert("L").getextrema()[0] < 50     # landscape, not blank


def test_progress_is_reported_while_rendering() -> None:
    seen: list[int] = []
    letters = [render.Letter(i, [f"Person {i}", "Lindenstraße 1", "10115 Berlin"], "Hello", "Body text", "1.1.2027",
                             qr_url=f"https://mail.shop.test/m/{i}") for i in range(120)]
    pdf = render.letters_pdf(letters, PostLayout.DIN5008, progress=seen.append)
    assert seen == [50, 100, 120]
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 120 and "Person 77" in reader.pages[77].extract_text()
    labels = PdfReader(io.BytesIO(render.labels_pdf([x.address for x in letters[:31]], LabelSheet.AVERY5160)))
    assert len(labels.pages) == 2 and "Person 30" in labels.pages[1].extract_text()


def test_no_post_in_the_preference_center_and_on_the_contact_page(client, editor, db_session, runtime,
                                                                  post_audience) -> None:
    _topic, people = post_audience
    anna = people["anna"]
    url = f"/p/{runtime.tokens.seal(Purpose.PREFERENCES, anna.id)}"
    assert "Send me no letters or cards by post" in client.get(url).get_data(as_text=True)
    r = client.post(url, data={"csrf_token": csrf(client, url), "first_name": "Anna", "last_name": "Gärtner",
                               "frequency": "every", "pause": "0", "no_post": "1"})
    assert "You will get no letters or cards by post." in r.get_data(as_text=True)
    assert "Nothing changed." not in r.get_data(as_text=True)
    assert fresh(db_session).get(PostOptOut, anna.id).source == "preference center"
    contact_page = f"/admin/contacts/{anna.id}"
    assert "no letters or cards (the contact asked)" in editor.get(contact_page).get_data(as_text=True)
    editor.post(f"/admin/contacts/{anna.id}/no-post", data={"csrf_token": csrf(editor, contact_page), "no_post": "0"})
    assert fresh(db_session).scalar(select(PostOptOut).where(PostOptOut.contact_id == anna.id)) is None
    assert fresh(db_session).scalar(select(PostRun)) is None
