"""A campaign's link table is written safely when two transactions store it at once (a send and a preview)."""

from __future__ import annotations

from sqlalchemy import delete, select

from campaigns.composing import editor
from campaigns.models import Campaign, Link

MJML = """<mjml><mj-body><mj-section><mj-column><mj-text>
<a href="https://shop.example/a">A</a> <a href="https://shop.example/b">B</a>
</mj-text></mj-column></mj-section></mj-body></mjml>"""


def test_storing_the_links_twice_at_once_keeps_one_table(runtime, db_session, make_campaign) -> None:
    campaign = make_campaign([], mjml=MJML)
    db_session.execute(delete(Link).where(Link.campaign_id == campaign.id))   # as before its first send or preview
    db_session.commit()
    result = editor.compiled(campaign)
    assert len(result.links) == 2
    # One request has loaded the campaign (and its empty link table) …
    with runtime.session_factory() as first:
        mine = first.get(Campaign, campaign.id)
        assert mine.links == []
        first.commit()      # (on SQLite its write lock would keep the other out; on PostgreSQL both run at once)
        # … while another stores the links and commits first (a preview, a worker's batch).
        with runtime.session_factory() as second:
            editor.ensure_links(second, second.get(Campaign, campaign.id), result)
            second.commit()
        ids = editor.ensure_links(first, mine, result)     # used to fail: duplicate (campaign_id, position)
        first.commit()
    rows = db_session.execute(select(Link.id, Link.position, Link.url).where(Link.campaign_id == campaign.id)
                              .order_by(Link.position)).all()
    assert [r.id for r in rows] == ids
    assert [(r.position, r.url) for r in rows] == [(0, "https://shop.example/a"), (1, "https://shop.example/b")]


def test_a_changed_or_shorter_link_table_is_updated(runtime, db_session, make_campaign) -> None:
    campaign = make_campaign([], mjml=MJML)
    db_session.commit()
    ids = editor.ensure_links(db_session, campaign, editor.compiled(campaign))
    db_session.commit()
    campaign.mjml = MJML.replace(' <a href="https://shop.example/b">B</a>', "").replace("/a", "/c")
    db_session.commit()
    again = editor.ensure_links(db_session, campaign, editor.compiled(campaign))
    db_session.commit()
    assert again == ids[:1]
    assert db_session.execute(select(Link.position, Link.url).where(Link.campaign_id == campaign.id)).all() == \
        [(0, "https://shop.example/c")]
