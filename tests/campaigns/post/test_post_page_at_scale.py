"""The post page on a big list (issue 16): who of the audience can get a letter takes five counts over the whole
audience, so a job counts it and the page shows the figures with their age; a print run or another audience makes
them stale, and stale figures are never shown."""

from __future__ import annotations

import dataclasses

import pytest

from tests.helpers import csrf


@pytest.fixture()
def big(runtime):
    """Treat the list as big: the figures go through their background job."""
    runtime.settings = dataclasses.replace(runtime.settings, live_count_limit=0)
    return runtime


def test_eligibility_is_counted_by_a_job_and_shown_with_its_age(big, editor, db_session, post_audience,
                                                                 post_campaign, work) -> None:
    topic, _people = post_audience
    campaign = post_campaign(topic)
    page = f"/admin/campaigns/{campaign.id}/post"
    html = editor.get(page).get_data(as_text=True)
    assert "being counted in the background" in html and 'http-equiv="refresh"' in html
    assert "with a complete postal address" not in html and "Print the letters" in html

    work()
    html = editor.get(page).get_data(as_text=True)
    assert "Print 5 letters" in html and "as of a few seconds ago" in html and 'http-equiv="refresh"' not in html

    # A print run: who already got it changes, so the stored figures are not shown again.
    r = editor.post(page, data={"csrf_token": csrf(editor, page), "layout": "card-a6", "label_sheet": "L7160",
                                "return_address": "Green Thumb\nLindenstraße 1\n10115 Berlin"})
    assert r.status_code == 303
    work()
    html = editor.get(page).get_data(as_text=True)
    assert "being counted in the background" in html and "Print 5 letters" not in html
    work()
    html = editor.get(page).get_data(as_text=True)
    assert "already got it" in html and "as of a few seconds ago" in html
