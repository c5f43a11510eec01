"""Settings pages through HTTP: sender identities, DKIM keys, postal address, SMTP relay tests, users."""

from __future__ import annotations

import html
import re

import dkim
import pytest
from sqlalchemy import select

from campaigns.models import AdminUser, Contact, Sender
from campaigns.runtime import Runtime
from campaigns.sending import test_sends
from tests.campaigns.web.test_access import PASSWORD, add_user, csrf, login, reread


@pytest.fixture()
def admin(app, db_session):
    client = app.test_client()
    add_user(db_session, "boss@shop.test", "admin")
    assert login(client, "boss@shop.test").status_code == 302
    return client


def post(client, url: str, data: dict, **kw):
    """POST a form with the session's CSRF token (taken from a page that has a form)."""
    return client.post(url, data={"csrf_token": csrf(client, "/admin/settings/senders"), **data}, **kw)


def flashes(response) -> list[str]:
    return re.findall(r'<p class="flash \w+" role="status">(.*?)</p>', response.get_data(as_text=True), re.S)


def test_overview_links_every_settings_page(admin) -> None:
    page = admin.get("/admin/settings").get_data(as_text=True)
    for path in ("senders", "dkim", "postal-address", "relays", "users"):
        assert f'href="/admin/settings/{path}"' in page


# ------------------------------------------------------------------ senders

def test_sender_identities_are_created_validated_edited_and_deleted(admin, db_session) -> None:
    r = post(admin, "/admin/settings/senders", {"name": "Anna Becker", "email": "not an address"})
    assert r.status_code == 400 and "not a valid email address" in r.get_data(as_text=True)
    assert 'value="Anna Becker"' in r.get_data(as_text=True)          # what was typed is kept
    r = post(admin, "/admin/settings/senders", {"name": "Anna <x>", "email": "anna@shop.test"})
    assert r.status_code == 400 and "line breaks" in r.get_data(as_text=True)
    r = post(admin, "/admin/settings/senders", {"name": "Anna Becker", "email": "Anna@Shop.test",
                                                "reply_to": "", "title": "Garden advisor"}, follow_redirects=True)
    assert r.status_code == 200 and "anna@shop.test" in r.get_data(as_text=True)
    sender = db_session.scalar(select(Sender))
    assert (sender.name, sender.email, sender.reply_to, sender.title) == ("Anna Becker", "anna@shop.test", None,
                                                                         "Garden advisor")
    r = post(admin, "/admin/settings/senders", {"name": "Other Anna", "email": "anna@shop.test"})
    assert r.status_code == 400 and "already a sender" in r.get_data(as_text=True)

    url = f"/admin/settings/senders/{sender.id}"
    r = post(admin, url, {"name": "Anna B.", "email": "anna@shop.test", "reply_to": "bad@"})
    assert r.status_code == 400
    r = post(admin, url, {"name": "Anna B.", "email": "anna@shop.test", "reply_to": "team@shop.test"})
    assert r.status_code == 302
    db_session.rollback()
    assert (reread(db_session, Sender, sender.id).name, reread(db_session, Sender, sender.id).reply_to) == \
        ("Anna B.", "team@shop.test")

    contact = Contact(email="kunde@example.com", owner_id=sender.id)
    db_session.add(contact)
    db_session.commit()
    r = post(admin, f"{url}/delete", {}, follow_redirects=True)
    assert any("deleted" in m for m in flashes(r))
    db_session.rollback()
    assert db_session.scalars(select(Sender)).all() == []
    assert db_session.scalar(select(Contact.owner_id).where(Contact.id == contact.id)) is None   # kept, no owner
    assert admin.get("/admin/settings/senders/999999", follow_redirects=True).status_code == 200


# ------------------------------------------------------------------ postal address

def test_postal_address_from_the_admin_is_in_the_footer_of_sent_mail(admin, app, db_session, make_contacts,
                                                                      make_campaign, outbox) -> None:
    r = post(admin, "/admin/settings/postal-address", {"postal_address": "Nowhere"})
    assert r.status_code == 400 and "full postal address" in r.get_data(as_text=True)
    r = post(admin, "/admin/settings/postal-address",
             {"postal_address": "Green Thumb GmbH\r\nGartenweg 7\r\n80331 München"}, follow_redirects=True)
    assert "Postal address saved" in r.get_data(as_text=True)
    assert "Green Thumb GmbH, Gartenweg 7, 80331 München" in r.get_data(as_text=True)

    topic, _ = make_contacts(1)
    campaign = make_campaign([topic])
    runtime = app.extensions["rapport"]
    test_sends.send_test(runtime, campaign.id, ["check@example.com"])
    message = outbox.get(outbox.list()[0].key)
    assert "Gartenweg 7, 80331 München" in message.text
    assert "Lindenstraße 1" not in message.text                         # the POSTAL_ADDRESS default is overridden

    r = post(admin, "/admin/settings/postal-address", {"postal_address": "  "}, follow_redirects=True)
    assert "default from POSTAL_ADDRESS applies" in r.get_data(as_text=True)


# ------------------------------------------------------------------ DKIM

def test_dkim_key_generation_publish_record_and_activation(admin, app, db_session, make_contacts,
                                                           make_campaign, outbox) -> None:
    page = admin.get("/admin/settings/dkim").get_data(as_text=True)
    assert "s2026._domainkey.shop.test" in page and "from the environment" in page

    for selector, message in (("s2026", "is in use"), ("Bad_Selector!", "one DNS label"), ("", "one DNS label")):
        r = post(admin, "/admin/settings/dkim", {"action": "generate", "kind": "rsa", "selector": selector})
        assert r.status_code == 400 and message in r.get_data(as_text=True)
    r = post(admin, "/admin/settings/dkim", {"action": "generate", "kind": "dsa", "selector": "x1"})
    assert r.status_code == 400

    r = post(admin, "/admin/settings/dkim", {"action": "generate", "kind": "rsa", "selector": "rapport2027"},
             follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "waiting for DNS" in page and "rapport2027._domainkey.shop.test" in page
    value = re.search(r'rapport2027\._domainkey\.shop\.test</code></dd>\s*<dt>Type</dt><dd><code>TXT</code></dd>'
                      r'\s*<dt>Value</dt><dd><code class="txt-value">(v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+)</code>',
                      page).group(1)
    zone = re.search(r'rapport2027\._domainkey\.shop\.test\. IN TXT ((?:"[^"]+" ?)+)', html.unescape(page)).group(1)
    strings = re.findall(r'"([^"]+)"', zone)
    assert all(len(s) <= 255 for s in strings) and "".join(strings) == value      # split as DNS requires
    key_file = app.extensions["rapport"].settings.instance_path / "dkim" / "rapport2027.rsa.private.pem"
    assert key_file.exists() and key_file.stat().st_mode & 0o077 == 0

    # Until it is activated, mail is still signed with the old key.
    topic, _ = make_contacts(1)
    campaign = make_campaign([topic])
    runtime: Runtime = app.extensions["rapport"]

    def signed_selector() -> str:
        test_sends.send_test(runtime, campaign.id, ["check@example.com"])
        raw = outbox.get(outbox.list()[0].key).raw
        return re.search(rb"DKIM-Signature:.*?\bs=([\w-]+)", raw, re.S).group(1).decode()

    assert signed_selector() == "s2026"
    r = post(admin, "/admin/settings/dkim", {"action": "activate"}, follow_redirects=True)
    assert "now signed with the key rapport2027" in r.get_data(as_text=True)
    assert signed_selector() == "rapport2027"
    raw = outbox.get(outbox.list()[0].key).raw
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: f"{value}".encode()
                       if name == b"rapport2027._domainkey.shop.test." else b"")

    # A worker process (another Runtime) picks the new key up without a restart.
    other = Runtime(runtime.settings)
    block = other.signer.sign([("From", "a@shop.test"), ("To", "b@example.com"), ("Subject", "x")], b"hi\r\n")
    assert b"s=rapport2027" in block and b"s=s2026" not in block
    other.close()

    from campaigns.cli import dkim_record

    assert "rapport2027._domainkey.shop.test. IN TXT" in dkim_record(runtime.settings)
    page = admin.get("/admin/settings/dkim").get_data(as_text=True)
    assert "s2026._domainkey" not in page and "from the admin" in page


def test_ed25519_key_signs_next_to_rsa_and_a_pending_key_can_be_discarded(admin, app) -> None:
    post(admin, "/admin/settings/dkim", {"action": "generate", "kind": "ed25519", "selector": "ed2027"})
    key_file = app.extensions["rapport"].settings.instance_path / "dkim" / "ed2027.ed25519.private.pem"
    assert key_file.exists()
    r = post(admin, "/admin/settings/dkim", {"action": "discard"}, follow_redirects=True)
    assert "discarded" in r.get_data(as_text=True) and not key_file.exists()
    r = post(admin, "/admin/settings/dkim", {"action": "activate"})
    assert r.status_code == 400 and "no new key" in r.get_data(as_text=True)

    post(admin, "/admin/settings/dkim", {"action": "generate", "kind": "ed25519", "selector": "ed2027"})
    post(admin, "/admin/settings/dkim", {"action": "activate"})
    page = admin.get("/admin/settings/dkim").get_data(as_text=True)
    assert "s2026._domainkey.shop.test" in page and "ed2027._domainkey.shop.test" in page   # both sign
    assert "k=ed25519" in page
    runtime = app.extensions["rapport"]
    runtime.reload_signer()
    signature = runtime.signer.sign([("From", "a@shop.test"), ("To", "b@example.com"), ("Subject", "x")],
                                    b"body\r\n")
    assert b"s=s2026" in signature and b"s=ed2027" in signature


# ------------------------------------------------------------------ relays

def test_relay_test_sends_one_real_message_and_shows_the_answer(admin, outbox) -> None:
    page = admin.get("/admin/settings/relays").get_data(as_text=True)
    assert "127.0.0.1" in page and "default" in page
    r = post(admin, "/admin/settings/relays", {"relay": "default", "to": "postmaster@example.com"})
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and "Test sent" in page and "250" in page
    entry = outbox.list()[0]
    assert entry.recipients == ("postmaster@example.com",) and "relay test" in entry.subject
    assert b"DKIM-Signature:" in outbox.get(entry.key).raw

    r = post(admin, "/admin/settings/relays", {"relay": "default", "to": "not-an-address"})
    assert r.status_code == 400 and "not a valid email address" in r.get_data(as_text=True)
    r = post(admin, "/admin/settings/relays", {"relay": "nope", "to": "a@example.com"})
    assert r.status_code == 400 and "no relay called" in r.get_data(as_text=True)


def test_relay_test_reports_a_refused_connection_without_crashing(runtime, db_session) -> None:
    import socket

    from campaigns.web.app import create_app

    with socket.socket() as probe:            # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = runtime.settings.with_overrides({"smtp_urls": (
        *runtime.settings.smtp_urls, f"broken=smtp://user:secret-pw@127.0.0.1:{port}?timeout=2")})
    app = create_app({"SETTINGS": settings, "TESTING": True})
    app.extensions["rapport"].use_redis(runtime.redis)
    client = app.test_client()
    add_user(db_session, "boss@shop.test", "admin")
    login(client, "boss@shop.test")
    page = client.get("/admin/settings/relays").get_data(as_text=True)
    assert "broken" in page and "secret-pw" not in page and "user" in page
    r = post(client, "/admin/settings/relays", {"relay": "broken", "to": "a@example.com"})
    assert r.status_code == 502
    page = r.get_data(as_text=True)
    assert "Test failed" in page and "did not accept our connection" in page
    app.extensions["rapport"].close()


# ------------------------------------------------------------------ users

def test_users_are_created_with_a_role_changed_and_deactivated(admin, app, db_session) -> None:
    r = post(admin, "/admin/settings/users", {"email": "ed@shop.test", "name": "Ed", "role": "editor",
                                              "password": "short"})
    assert r.status_code == 400 and "at least 10 characters" in r.get_data(as_text=True)
    assert 'value="ed@shop.test"' in r.get_data(as_text=True)
    r = post(admin, "/admin/settings/users", {"email": "ed@shop.test", "role": "owner", "password": PASSWORD})
    assert r.status_code == 400 and "Choose a role" in r.get_data(as_text=True)
    r = post(admin, "/admin/settings/users", {"email": "Ed@Shop.test", "name": "Ed", "role": "editor",
                                              "password": PASSWORD})
    assert r.status_code == 302
    r = post(admin, "/admin/settings/users", {"email": "ed@shop.test", "role": "viewer", "password": PASSWORD})
    assert r.status_code == 400 and "already a user" in r.get_data(as_text=True)
    ed = db_session.scalar(select(AdminUser).where(AdminUser.email == "ed@shop.test"))
    assert ed.role == "editor" and ed.password_hash.startswith("scrypt:")

    ed_client = app.test_client()
    assert login(ed_client, "ed@shop.test").status_code == 302
    assert ed_client.get("/admin/settings/users").status_code == 403

    url = f"/admin/settings/users/{ed.id}"
    post(admin, url, {"action": "role", "role": "viewer"})
    db_session.rollback()
    assert reread(db_session, AdminUser, ed.id).role == "viewer"
    assert ed_client.post("/admin/topics", data={"csrf_token": csrf(ed_client, "/admin/topics"),
                                                 "name": "X"}).status_code == 403      # takes effect at once
    post(admin, url, {"action": "password", "password": "a new password!"})
    post(admin, url, {"action": "deactivate"})
    assert ed_client.get("/admin/contacts").status_code == 302                          # logged out at once
    assert login(app.test_client(), "ed@shop.test", "a new password!").status_code == 401
    post(admin, url, {"action": "activate"})
    assert login(app.test_client(), "ed@shop.test", "a new password!").status_code == 302


def test_the_last_admin_cannot_be_removed(admin, db_session) -> None:
    boss = db_session.scalar(select(AdminUser).where(AdminUser.email == "boss@shop.test"))
    url = f"/admin/settings/users/{boss.id}"
    for data in ({"action": "role", "role": "editor"}, {"action": "deactivate"}):
        r = post(admin, url, data, follow_redirects=True)
        assert any("last active admin" in m for m in flashes(r))
    db_session.rollback()
    again = reread(db_session, AdminUser, boss.id)
    assert (again.role, again.active) == ("admin", True)
    # With a second admin, the first may step down.
    second = add_user(db_session, "second@shop.test", "admin")
    post(admin, url, {"action": "role", "role": "editor"})
    db_session.rollback()
    assert reread(db_session, AdminUser, boss.id).role == "editor"
    assert admin.get("/admin/settings/users").status_code == 403
    assert second.id


def test_bad_ids_and_actions_answer_with_a_message(admin) -> None:
    r = post(admin, "/admin/settings/users/999999", {"action": "role", "role": "viewer"}, follow_redirects=True)
    assert any("no such user" in m for m in flashes(r))
    r = post(admin, "/admin/settings/users/999999", {"action": "explode"}, follow_redirects=True)
    assert r.status_code == 200
    r = post(admin, "/admin/settings/dkim", {"action": "explode"}, follow_redirects=True)
    assert r.status_code == 200 and any("Unknown action" in m for m in flashes(r))


def test_check_dns_compares_the_published_record_with_the_key(admin, app) -> None:
    post(admin, "/admin/settings/dkim", {"action": "generate", "kind": "ed25519", "selector": "ed2027"})
    page = html.unescape(admin.get("/admin/settings/dkim").get_data(as_text=True))
    value = re.search(r'ed2027\._domainkey\.shop\.test\. IN TXT "([^"]+)"', page).group(1)
    published: dict[str, list[str]] = {}

    def resolve(name: str) -> list[str]:
        if name not in published:
            raise LookupError(name)
        return published[name]

    app.config["RAPPORT_DNS_TXT_RESOLVER"] = resolve
    check = {"action": "check", "selector": "ed2027"}
    assert any("No TXT record found" in m for m in flashes(post(admin, "/admin/settings/dkim", check,
                                                                follow_redirects=True)))
    published["ed2027._domainkey.shop.test"] = ["v=DKIM1; k=ed25519; p=AAAAold"]
    assert any("not this key" in m for m in flashes(post(admin, "/admin/settings/dkim", check,
                                                         follow_redirects=True)))
    published["ed2027._domainkey.shop.test"] = [value.replace("p=", "p= ")]     # DNS tools may add spaces
    assert any("matches this key" in m for m in flashes(post(admin, "/admin/settings/dkim", check,
                                                             follow_redirects=True)))
    r = post(admin, "/admin/settings/dkim", {"action": "check", "selector": "nope"})
    assert r.status_code == 400 and "no key with that selector" in r.get_data(as_text=True)



def test_workers_greet_relays_with_the_sending_domain(runtime) -> None:
    # A host without an FQDN would otherwise say EHLO [10.0.0.5], which receivers score as spam.
    assert runtime.relays.pool().relay.local_hostname == runtime.settings.dkim_domain == "shop.test"
    named = runtime.settings.with_overrides({"smtp_urls": ("smtp://127.0.0.1:25?local_hostname=mx.shop.test",)})
    other = Runtime(named)
    try:
        assert other.relays.pool().relay.local_hostname == "mx.shop.test"
    finally:
        other.close()
