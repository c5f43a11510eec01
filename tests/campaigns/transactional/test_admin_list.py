"""The admin's list of transactional messages: what a viewer may read (template, recipient, status, relay reply,
opens and clicks), filters, keyset pages, links from the template's page and the contact's timeline."""

from __future__ import annotations

import re

from sqlalchemy import select

from campaigns.contacts.suppression import suppress
from campaigns.models import AdminRole, AdminUser, Contact, SuppressionReason
from campaigns.web.admin import transactional as admin_tx
from tests.campaigns.transactional.conftest import receipt_body
from tests.campaigns.web.test_admin_crawl import _login


def _viewer(client, db_session) -> None:
    from werkzeug.security import generate_password_hash

    db_session.add(AdminUser(email="viewer@rapport.test", name="Viewer", role=AdminRole.VIEWER,
                             password_hash=generate_password_hash("viewer-pass-123")))
    db_session.commit()
    _login(client, "viewer@rapport.test", "viewer-pass-123")


def _ids(html: str) -> list[str]:
    return re.findall(r'<tr id="tx-(tx_[\w-]+)"', html)


def test_a_viewer_reads_filters_and_pages_the_messages(client, db_session, receipt, tx_key, outbox, work,
                                                       monkeypatch) -> None:
    suppress(db_session, "blocked@example.com", SuppressionReason.MANUAL, "test")
    db_session.commit()
    sent = [client.post("/api/v1/tx", json=receipt_body(to=to), headers=tx_key).get_json()["message_id"]
            for to in ("ada@example.com", "bob@example.com", "blocked@example.com")]
    work()
    pixel = re.search(r'src="https?://[^"]+(/to/[^"]+)"', outbox.get(outbox.list()[0].key).html).group(1)
    client.get(pixel, headers={"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15"})
    work()
    _viewer(client, db_session)
    page = client.get("/admin/transactional")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert _ids(html) == sent[::-1]                                   # newest first
    assert "Order receipt" in html and "250" in html and "suppressed" in html and "suppression list" in html
    opener = outbox.list()[0].recipients[0]
    row = next(r for r in html.split("<tr id=")[1:] if f">{opener}<" in r).split("</tr>")[0]
    assert re.search(r'<td class="num">1<br><span class="muted">first', row)   # its open, by a person
    # Filters: status, recipient (whole address or its start), template, message id.
    assert _ids(client.get("/admin/transactional?status=suppressed").get_data(as_text=True)) == [sent[2]]
    assert _ids(client.get("/admin/transactional?recipient=BOB@example.com").get_data(as_text=True)) == [sent[1]]
    assert _ids(client.get("/admin/transactional?recipient=a").get_data(as_text=True)) == [sent[0]]
    assert len(_ids(client.get(f"/admin/transactional?template={receipt.id}").get_data(as_text=True))) == 3
    assert _ids(client.get(f"/admin/transactional?message={sent[1]}").get_data(as_text=True)) == [sent[1]]
    # Nonsense in the query string is no filter and no error.
    r = client.get("/admin/transactional?template=x%00&status=nope&before=-3&recipient=%25")
    assert r.status_code == 200 and "No messages match" in r.get_data(as_text=True)
    # Keyset pages: one message a page here, each page older than the last.
    monkeypatch.setattr(admin_tx, "PAGE", 1)
    url, seen = "/admin/transactional?template=" + str(receipt.id), []
    while url:
        html = client.get(url).get_data(as_text=True)
        seen += _ids(html)
        older = re.search(r'<a href="([^"]+)">Older messages', html)
        url = older.group(1).replace("&amp;", "&") if older else ""
    assert seen == sent[::-1]
    # Nobody edits: the page takes no POST, and a viewer changes nothing anywhere.
    assert client.post("/admin/transactional").status_code in (400, 403, 405)
    # Linked from the template's page and the contact's timeline.
    campaign_page = client.get(f"/admin/campaigns/{receipt.id}").get_data(as_text=True)
    assert f'href="/admin/transactional?template={receipt.id}"' in campaign_page
    ada = db_session.scalar(select(Contact).where(Contact.email == "ada@example.com"))
    contact_page = client.get(f"/admin/contacts/{ada.id}").get_data(as_text=True)
    assert "/admin/transactional?recipient=ada@example.com" in contact_page
    assert f"/admin/transactional?message={sent[0]}" in contact_page


def test_the_templates_report_shows_its_messages(client, db_session, receipt, tx_key, outbox, work) -> None:
    for to in ("ada@example.com", "bob@example.com"):
        assert client.post("/api/v1/tx", json=receipt_body(to=to), headers=tx_key).status_code == 202
    work()
    link = re.search(r'href="https?://[^"]+(/tc/[^"]+)"', outbox.get(outbox.list()[0].key).html).group(1)
    client.get(link, headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/133.0"})
    work()
    _viewer(client, db_session)
    client.get(f"/admin/campaigns/{receipt.id}/report")   # counted by a job the first time
    work()
    html = client.get(f"/admin/campaigns/{receipt.id}/report").get_data(as_text=True)
    section = html.split('id="tx-report"')[1].split("</section>")[0]
    cells = dict(re.findall(r'<th scope="row">([^<]+)</th><td>([^<]+)</td>', section))
    assert cells == {"Messages accepted": "2", "Sent (accepted by the relay)": "2", "Opened": "1 (50.0%)",
                     "Clicked": "1 (50.0%)", "Bounced": "0"}
    assert f'href="/admin/transactional?template={receipt.id}"' in section
