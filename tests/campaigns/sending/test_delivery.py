"""Delivery semantics against a scripted SMTP server: 4xx retry with backoff, 5xx rejection, relay problems,
auto-pause, give-up, and nothing sent twice."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select, update

from campaigns.models import Campaign, CampaignStatus, Contact, ContactStatus, Send, SendStatus
from campaigns.sending import delivery, sweeper
from campaigns.sending import lifecycle as sending


class Scripted:
    """Accepts mail except for addresses given a scripted RCPT reply."""

    def __init__(self) -> None:
        self.replies: dict[str, str] = {}
        self.received: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.replies:
            return self.replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def scripted(runtime):
    handler = Scripted()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="sink.test")
    controller.start()
    use_relay(runtime, f"smtp://127.0.0.1:{port}")
    yield handler
    controller.stop()


def use_relay(runtime, url: str) -> None:
    runtime.settings = runtime.settings.with_overrides({"smtp_urls": (url,)})
    if "relays" in runtime.__dict__:
        runtime.relays.close()
        del runtime.__dict__["relays"]


def rows(db_session) -> dict[str, Send]:
    db_session.rollback()
    db_session.expire_all()
    joined = select(Send, Contact).join(Contact, Contact.id == Send.contact_id)
    return {c.email: s for s, c in db_session.execute(joined)}


def test_4xx_is_retried_later_with_backoff_and_then_delivered(runtime, db_session, make_contacts, make_campaign,
                                                              scripted, run_worker) -> None:
    topic, contacts = make_contacts(4)
    greylisted = contacts[1].email
    scripted.replies[greylisted] = "451 4.7.1 Greylisted, try again later"
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    state = rows(db_session)
    assert sorted(scripted.received) == sorted(c.email for c in contacts if c.email != greylisted)
    row = state[greylisted]
    assert row.status == SendStatus.QUEUED and row.attempts == 1 and row.smtp_code == 451
    assert "Greylisted" in row.last_error
    wait = row.next_attempt_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=30) < wait <= dt.timedelta(seconds=60)   # first retry delay
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.RUNNING     # not finished: one waits
    assert runtime.queue.count == 0 and not runtime.queue.scheduled_job_registry.get_job_ids()   # no job left
    assert sweeper.sweep(runtime)["send"] == 0        # not due yet: the sweeper leaves it alone

    # The retry time arrives and the server now accepts: the sweeper (not a job of the batch) picks it up.
    del scripted.replies[greylisted]
    db_session.execute(update(Send).values(next_attempt_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    db_session.commit()
    assert sweeper.sweep(runtime)["send"] == 1
    assert sweeper.sweep(runtime)["send"] == 0        # its job is marked: no second one
    run_worker()
    state = rows(db_session)
    assert state[greylisted].status == SendStatus.SENT and state[greylisted].attempts == 2
    assert scripted.received.count(greylisted) == 1 and len(scripted.received) == 4
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED


def test_5xx_fails_with_the_reply_and_suppresses_the_address(runtime, db_session, make_contacts, make_campaign,
                                                             scripted, run_worker) -> None:
    topic, contacts = make_contacts(3)
    scripted.replies[contacts[0].email] = "550 5.1.1 No such user here"
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    row = rows(db_session)[contacts[0].email]
    assert row.status == SendStatus.FAILED and row.smtp_code == 550 and "No such user" in row.last_error
    assert db_session.get(Contact, contacts[0].id).status == ContactStatus.BOUNCED
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED
    assert db_session.get(Campaign, campaign.id).failed == 1


def test_mixed_outcomes_of_one_claim_are_each_recorded(runtime, db_session, make_contacts, make_campaign,
                                                       scripted, run_worker) -> None:
    """A claim's outcomes are written grouped by outcome: each row still gets exactly its own status and reply."""
    topic, contacts = make_contacts(12)
    rejected = {contacts[1].email, contacts[5].email, contacts[9].email}
    deferred = {contacts[3].email}
    for email in rejected:
        scripted.replies[email] = "550 5.1.1 No such user here"
    for email in deferred:
        scripted.replies[email] = "451 4.3.0 Try again later"
    campaign = make_campaign([topic])
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=1)
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    got = rows(db_session)
    for email, row in got.items():
        if email in rejected:
            assert (row.status, row.smtp_code, row.sent_at) == (SendStatus.FAILED, 550, None)
            assert "No such user" in row.last_error
        elif email in deferred:
            assert (row.status, row.smtp_code, row.sent_at) == (SendStatus.QUEUED, 451, None)
            assert row.next_attempt_at is not None and row.attempts == 1
        else:
            assert (row.status, row.smtp_code, row.last_error) == (SendStatus.SENT, 250, "")
            assert row.sent_at is not None and row.sent_at.replace(tzinfo=None) >= before
    assert sorted(scripted.received) == sorted(e for e in got if e not in rejected | deferred)
    campaign = db_session.get(Campaign, campaign.id)
    assert (campaign.sent, campaign.failed) == (8, 3)


def test_max_attempts_then_failed(runtime, db_session, make_contacts, make_campaign, scripted) -> None:
    runtime.settings = runtime.settings.with_overrides({"max_attempts": 2})
    topic, contacts = make_contacts(1)
    scripted.replies[contacts[0].email] = "452 4.2.2 Mailbox full"
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    sending.dispatch(runtime, campaign.id)
    for _ in range(2):
        db_session.execute(update(Send).values(next_attempt_at=None))
        db_session.commit()
        delivery.send_batch(runtime, campaign.id, 0, 10**9)
    row = rows(db_session)[contacts[0].email]
    assert row.status == SendStatus.FAILED and row.attempts == 2 and "gave up after 2 attempts" in row.last_error
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED


def test_claim_size_from_the_environment(tmp_path) -> None:
    from campaigns.config import ConfigError, from_env

    env = {"RAPPORT_INSTANCE": str(tmp_path), "SECRET_KEY": "x"}
    assert from_env(env).claim_size == 500
    assert from_env(dict(env, RAPPORT_CLAIM_SIZE="50")).claim_size == 50
    assert from_env(dict(env, RAPPORT_CLAIM_SIZE="0")).claim_size == 1
    with pytest.raises(ConfigError, match="RAPPORT_CLAIM_SIZE"):
        from_env(dict(env, RAPPORT_CLAIM_SIZE="many"))


def test_retry_schedule_from_the_environment_and_the_settings_page(runtime, editor, db_session, make_contacts,
                                                                   make_campaign, scripted, run_worker) -> None:
    from campaigns.config import ConfigError, from_env
    from tests.helpers import csrf

    env = {"RAPPORT_INSTANCE": str(runtime.settings.instance_path), "SECRET_KEY": "x",
           "RAPPORT_RETRY_DELAYS": "5, 30,120", "RAPPORT_RETRY_MAX_AGE": "600"}
    s = from_env(env)
    assert (s.retry_delays, s.max_attempts, s.retry_max_age) == ((5, 30, 120), 4, 600)
    with pytest.raises(ConfigError, match="RAPPORT_RETRY_DELAYS"):
        from_env(dict(env, RAPPORT_RETRY_DELAYS="soon"))

    # An admin shortens the schedule to one retry after 2 seconds (the editor fixture is promoted for this).
    from campaigns.models import AdminUser

    db_session.execute(update(AdminUser).values(role="admin"))
    db_session.commit()
    r = editor.post("/admin/settings/retries", data={"delays": "abc", "max_age": "1",
                                                     "csrf_token": csrf(editor, "/admin/settings/retries")})
    assert r.status_code == 400 and "comma-separated whole seconds" in r.get_data(as_text=True)
    r = editor.post("/admin/settings/retries", data={"delays": "2", "max_age": "1",
                                                     "csrf_token": csrf(editor, "/admin/settings/retries")})
    assert r.status_code == 302
    assert "1 retry" in editor.get("/admin/settings/retries").get_data(as_text=True)

    topic, contacts = make_contacts(2)
    full = contacts[0].email
    scripted.replies[full] = "452 4.2.2 Mailbox full"
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    row = rows(db_session)[full]
    wait = row.next_attempt_at - dt.datetime.now(dt.UTC)
    assert row.status == SendStatus.QUEUED and dt.timedelta(0) < wait <= dt.timedelta(seconds=2)
    db_session.execute(update(Send).values(next_attempt_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    db_session.commit()
    assert sweeper.sweep(runtime)["send"] == 1
    run_worker()
    row = rows(db_session)[full]
    assert row.status == SendStatus.FAILED and row.attempts == 2
    assert "gave up after 2 attempts" in row.last_error and "Mailbox full" in row.last_error   # the last reply
    sweeper.sweep(runtime)
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED


def test_retries_end_at_the_maximum_age(runtime, db_session, make_contacts, make_campaign, scripted,
                                         run_worker) -> None:
    runtime.settings = runtime.settings.with_overrides({"retry_max_age": 3600})
    topic, contacts = make_contacts(1)
    scripted.replies[contacts[0].email] = "451 4.3.0 Try later"
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    sending.dispatch(runtime, campaign.id)
    runtime.queue.empty()
    # Queued long ago (a campaign paused for a day, say): the next retry would start past the maximum age.
    db_session.execute(update(Send).values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=59, seconds=30)))
    db_session.commit()
    delivery.send_batch(runtime, campaign.id, 0, 10**9)
    row = rows(db_session)[contacts[0].email]
    assert row.status == SendStatus.FAILED and row.attempts == 1
    assert "retries end 1 h after queueing" in row.last_error and "Try later" in row.last_error


def test_relay_refusing_login_pauses_campaign_and_blames_no_recipient(runtime, db_session, make_contacts,
                                                                      make_campaign) -> None:
    port = free_port()

    def deny(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=False, handled=False)

    controller = Controller(Scripted(), hostname="127.0.0.1", port=port, authenticator=deny,
                            auth_require_tls=False, server_hostname="sink.test")
    controller.start()
    try:
        use_relay(runtime, f"smtp://user:wrong@127.0.0.1:{port}")
        topic, contacts = make_contacts(5)
        campaign = make_campaign([topic])
        sending.start(db_session, runtime, campaign)
        db_session.commit()
        sending.dispatch(runtime, campaign.id)
        result = delivery.send_batch(runtime, campaign.id, 0, 10**9)
    finally:
        controller.stop()
    assert result.stopped == "paused"
    state = rows(db_session)
    c = db_session.get(Campaign, campaign.id)
    assert c.status == CampaignStatus.PAUSED and "relay refused" in c.status_reason and "535" in c.status_reason
    assert all(s.status == SendStatus.QUEUED and s.attempts == 0 for s in state.values())
    assert all(db_session.get(Contact, x.id).status == ContactStatus.SUBSCRIBED for x in contacts)


def test_unreachable_relay_auto_pauses_after_consecutive_failures(runtime, db_session, make_contacts,
                                                                  make_campaign, run_worker) -> None:
    use_relay(runtime, f"smtp://127.0.0.1:{free_port()}")     # nothing listens there
    runtime.settings = runtime.settings.with_overrides({"max_consecutive_failures": 4})
    topic, _ = make_contacts(9)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()                                              # no job crashes: the worker keeps running
    state = rows(db_session).values()
    c = db_session.get(Campaign, campaign.id)
    assert c.status == CampaignStatus.PAUSED and "4 failed deliveries in a row" in c.status_reason
    assert all(s.status == SendStatus.QUEUED for s in state)   # nobody lost, nobody failed for the relay's fault
    # The pause comes after the 4th failure; a message already handed to the sender thread may fail too.
    assert 4 <= sum(1 for s in state if "temporary failure" in s.last_error) <= 4 + delivery._Delivery.IN_FLIGHT - 1


def test_campaign_goes_through_its_chosen_relay(runtime, db_session, make_contacts, make_campaign) -> None:
    from campaigns.composing.editor import save_campaign
    from campaigns.errors import ValidationError

    first, second = Scripted(), Scripted()
    ports = [free_port(), free_port()]
    controllers = [Controller(h, hostname="127.0.0.1", port=p, server_hostname="sink.test")
                   for h, p in zip((first, second), ports, strict=True)]
    for c in controllers:
        c.start()
    try:
        runtime.settings = runtime.settings.with_overrides(
            {"smtp_urls": (f"smtp://127.0.0.1:{ports[0]}", f"transactional=smtp://127.0.0.1:{ports[1]}")})
        runtime.__dict__.pop("relays", None)
        assert runtime.settings.relay_names == ("default", "transactional")
        topic, contacts = make_contacts(2)
        campaign = make_campaign([topic])
        with pytest.raises(ValidationError, match="no relay called"):
            save_campaign(db_session, {"name": "x", "subject": "s", "mjml": "m", "relay": "nope"}, campaign,
                          relay_names=runtime.settings.relay_names)
        db_session.rollback()
        campaign.relay = "transactional"
        db_session.commit()
        sending.start(db_session, runtime, campaign)
        db_session.commit()
        sending.dispatch(runtime, campaign.id)
        delivery.send_batch(runtime, campaign.id, 0, 10**9)
    finally:
        for c in controllers:
            c.stop()
    assert first.received == [] and sorted(second.received) == sorted(c.email for c in contacts)


def test_a_suppressed_address_added_again_stays_suppressed(runtime, db_session, make_contacts, make_campaign,
                                                           scripted, run_worker) -> None:
    from campaigns.contacts.records import save_contact

    topic, contacts = make_contacts(2)
    scripted.replies[contacts[0].email] = "550 5.1.1 No such user here"
    sending.start(db_session, runtime, make_campaign([topic]))
    db_session.commit()
    run_worker()
    db_session.rollback()
    gone = db_session.get(Contact, contacts[0].id)
    email = gone.email
    db_session.delete(gone)                  # the marketer deletes the contact…
    db_session.commit()
    again = save_contact(db_session, {"email": email.upper(), "first_name": "Back"}, topic_ids=[topic.id])
    db_session.commit()                      # …and adds it again later
    assert again.status == ContactStatus.BOUNCED
    scripted.received.clear()
    sending.start(db_session, runtime, make_campaign([topic]))
    db_session.commit()
    run_worker()
    assert scripted.received == [contacts[1].email]


def test_a_template_failing_for_many_recipients_pauses_the_campaign_with_the_reason(
        runtime, db_session, make_contacts, make_campaign, scripted, run_worker) -> None:
    """Issue 12: a template that breaks for real recipients (here: anyone whose last name is set) stops the
    campaign after max_template_failures in a row instead of failing the whole audience."""
    runtime.settings = runtime.settings.with_overrides({"max_template_failures": 3})
    topic, contacts = make_contacts(12)
    db_session.execute(update(Contact).values(last_name="Meyer"))
    db_session.commit()
    subject = ("Hi {{ contact.first_name }}"
               "{% if contact.last_name %}{{ 10 // (contact.last_name|length - 5) }}{% endif %}")
    campaign = make_campaign([topic], subject=subject)
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    state = rows(db_session)
    c = db_session.get(Campaign, campaign.id)
    assert c.status == CampaignStatus.PAUSED and "template failed for 3 recipients in a row" in c.status_reason
    assert sum(1 for r in state.values() if r.status == SendStatus.FAILED) == 3
    assert sum(1 for r in state.values() if r.status == SendStatus.QUEUED) == 9   # the rest untouched
    assert scripted.received == []


@pytest.mark.parametrize("helper", [False, True], ids=["in-process", "helper-process"])
def test_a_message_dkim_cannot_sign_fails_that_send_and_the_rest_go_out(
        runtime, db_session, make_contacts, make_campaign, scripted, run_worker, monkeypatch, helper: bool) -> None:
    """A signing error (DKIM refuses a header or body) fails that one send with the reason; it used to end the batch
    job, and the campaign could never finish."""
    from mailer.dkim import DKIMSigner
    from mailer.dkim_helper import SigningProcess

    topic, contacts = make_contacts(5)
    victim = contacts[2].email
    real_sign, real_result = DKIMSigner.sign, SigningProcess.result
    refused: set[int] = set()

    def sign(self, headers, body, **kw):
        if dict(headers)["To"].endswith(f"<{victim}>") or dict(headers)["To"] == victim:
            raise ValueError("header value has a bare CR/LF")
        return real_sign(self, headers, body, **kw)

    def submit(self, headers, body, **kw):    # the helper signs in its own process: refuse on this side
        ticket = real_submit(self, headers, body, **kw)
        if dict(headers)["To"].endswith(f"<{victim}>") or dict(headers)["To"] == victim:
            refused.add(ticket)
        return ticket

    def result(self, ticket):
        prefix = real_result(self, ticket)
        if ticket in refused:
            raise ValueError("header value has a bare CR/LF")
        return prefix

    real_submit = SigningProcess.submit
    if helper:
        runtime.signing_helper = True
        monkeypatch.setattr(SigningProcess, "submit", submit)
        monkeypatch.setattr(SigningProcess, "result", result)
    else:
        monkeypatch.setattr(DKIMSigner, "sign", sign)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    try:
        run_worker()
    finally:
        runtime.close()
    state = rows(db_session)
    failed = [r for r in state.values() if r.status == SendStatus.FAILED]
    assert len(failed) == 1 and "could not be DKIM-signed: header value has a bare CR/LF" in failed[0].last_error
    assert sorted(scripted.received) == sorted(c.email for c in contacts if c.email != victim)
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED
    assert not helper or refused
