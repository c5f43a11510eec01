"""A draw's admin page on a big draw (issue 16): the winners, then the newest entries up to a page, and the number
of entries counted — never every entry reference loaded, nor every contact read to find the page's emails."""

from __future__ import annotations

import re

from sqlalchemy import create_engine, event, update
from sqlalchemy.engine import Engine

from campaigns.draws import drawing
from campaigns.draws import service as draws
from campaigns.models import Base, DrawEntry
from campaigns.web.admin import draws as draw_views
from tests.campaigns.draws.test_draws import form


def test_the_page_shows_winners_then_the_newest_entries_and_counts_the_rest(
        editor, db_session, make_contacts, monkeypatch, tmp_path) -> None:
    _topic, contacts = make_contacts(5)
    draw = draws.save_draw(db_session, form())
    db_session.flush()
    for i, contact in enumerate(contacts):
        db_session.add(DrawEntry(draw_id=draw.id, contact_id=contact.id, ref=f"ref{i}", source="mail"))
    db_session.flush()
    db_session.execute(update(DrawEntry).where(DrawEntry.ref == "ref1").values(winner_rank=1))
    db_session.commit()
    monkeypatch.setattr(draw_views, "PAGE", 3)

    def every_ref(*_a, **_k):
        raise AssertionError("the page loads every entry reference to count them")

    monkeypatch.setattr(drawing, "refs_of", every_ref)
    statements: list[tuple[str, object]] = []
    engine = editor.application.extensions["rapport"].engine

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", seen)      # every engine: the app's reads may have their own
    try:
        page = editor.get(f"/admin/draws/{draw.id}").get_data(as_text=True)
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert "5 entries" in page and "the latest 3 of 5" in page
    assert re.findall(r"<code>(ref\d)</code>", page) == ["ref1", "ref4", "ref3"]   # the winner, then the newest
    assert contacts[4].email in page and contacts[0].email not in page
    if engine.dialect.name == "sqlite":       # PostgreSQL picks a scan for tables this small anyway
        # The plans are asked of a database of the same schema made for this check: the session's shared test
        # database carries the query planner's state from earlier tests (an ANALYZE of the admin bench's data set
        # made SQLite prefer scans here even after its statistics were dropped), which is not what this page does.
        fresh = create_engine(f"sqlite:///{tmp_path / 'plans.db'}")
        Base.metadata.create_all(fresh)
        with fresh.connect() as conn:
            plans = [" | ".join(r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + s, p).all())
                     for s, p in statements if "draw_entry" in s or "FROM contact" in s]
        fresh.dispose()
        assert plans and not [p for p in plans if "SCAN contact" in p or "SCAN draw_entry" in p], plans
