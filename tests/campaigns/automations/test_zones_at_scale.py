"""The automations pages show each active automation's next run in its audience's time zones. Finding those zones
must not read every contact on each view (issue 16: one DISTINCT over 1,000,000 contacts per automation): it jumps
from zone to zone on the index of contact.timezone and keeps the zones that have someone in the audience."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from campaigns.automations import triggers
from campaigns.composing.editor import save_campaign
from campaigns.contacts.records import set_subscriptions
from campaigns.models import Topic
from tests.campaigns.automations.test_automations import GREETING, automation, person


def test_audience_zones_are_exact_and_found_without_a_scan_of_the_contacts(db_session, runtime) -> None:
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("reads SQLite's query plans (PostgreSQL picks a scan for a table this small anyway)")
    topic = Topic(name="Garden tips")
    db_session.add(topic)
    db_session.flush()
    for email, tz in (("ana@example.com", "Europe/Berlin"), ("ben@example.com", "Asia/Tokyo"),
                      ("cy@example.com", "America/Lima"), ("di@example.com", "Europe/Berlin")):
        person(db_session, email, tz=tz)
    readers = [person(db_session, e, tz=tz) for e, tz in (("eve@example.com", "Asia/Tokyo"),
                                                          ("fay@example.com", "Africa/Accra"))]
    for reader in readers:
        set_subscriptions(db_session, reader, [topic.id])
    template = save_campaign(db_session, {"name": "Tips", "subject": "Tips", "mjml": GREETING},
                             topic_ids=[topic.id])
    db_session.commit()
    auto = automation(db_session, template, name="Monthly tips", trigger="cron", cron="0 9 1 * *")

    statements: list[str] = []
    engine = db_session.get_bind()

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        zones = triggers.audience_zones(db_session, auto)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert zones == ["Africa/Accra", "Asia/Tokyo"]           # the audience's zones only, each once

    plans = [" | ".join(row[3] for row in db_session.connection().exec_driver_sql(
        "EXPLAIN QUERY PLAN " + statement, parameters).all()) for statement, parameters in statements
        if "contact" in statement]
    assert plans and not [p for p in plans if "SCAN contact" in p], plans
