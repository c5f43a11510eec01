"""The bulk import path: contact.created / contact.updated for each imported row when an endpoint wants them, and
no outbox row at all when none does."""

from __future__ import annotations

from sqlalchemy import func, select

from campaigns import queueing
from campaigns.contacts.records import save_contact
from campaigns.models import WebhookEvent
from campaigns.webhook_events import EventType
from tests.campaigns.contacts import test_import
from tests.campaigns.contacts.test_import import import_file
from tests.helpers import fresh

admin_user = test_import.admin_user
logged_in = test_import.logged_in
CSV = b"Email,First name,City\nAnna@Example.com,Anna-Lena,\nnew@example.com,Neu,Bonn\n"


def test_an_import_posts_created_and_updated_contacts(logged_in, runtime, run_worker, db_session, receiver,
                                                      subscribe) -> None:
    anna = save_contact(db_session, {"email": "anna@example.com", "first_name": "Anna", "city": "Berlin"})
    db_session.commit()
    subscribe([EventType.CONTACT_CREATED, EventType.CONTACT_UPDATED])
    progress = import_file(logged_in, run_worker, CSV, mode="update")
    assert (progress["created"], progress["updated"]) == (1, 1)
    queueing.enqueue(runtime.queue, queueing.Job.ROUTE_WEBHOOKS)
    db_session.rollback()
    run_worker()
    by_type = {r.type: r.payload["data"] for r in receiver.received}
    assert sorted(receiver.types()) == ["contact.created", "contact.updated"]
    assert all(r.valid for r in receiver.received)
    assert by_type["contact.created"]["contact"]["email"] == "new@example.com"
    assert by_type["contact.created"]["contact"]["city"] == "Bonn" and by_type["contact.created"]["source"] == "import"
    assert by_type["contact.updated"]["contact"]["id"] == anna.id
    assert by_type["contact.updated"]["changed"] == ["first_name"]          # a blank cell changes nothing


def test_an_import_writes_no_outbox_rows_without_a_subscriber(logged_in, run_worker, db_session,
                                                              subscribe) -> None:
    subscribe([EventType.ORDER_RECORDED])
    import_file(logged_in, run_worker, CSV, mode="update")
    assert fresh(db_session).scalar(select(func.count()).select_from(WebhookEvent)) == 0
