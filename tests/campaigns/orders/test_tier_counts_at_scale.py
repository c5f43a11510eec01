"""The loyalty page on a big list (issue 16): contacts per tier is a pass over every contact's tier, so a job counts
it and the page shows the counts with their age; editing the tiers (and the recompute job) drops the stored counts,
so counts under the old tiers are never shown."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal

import pytest

from campaigns.models import Order, utcnow
from tests.helpers import csrf


@pytest.fixture()
def big(runtime):
    """Treat the list as big: the counts go through their background job."""
    runtime.settings = dataclasses.replace(runtime.settings, live_count_limit=0)
    return runtime


def customers(page: str, tier: str) -> str:
    """The Customers cell of a tier's row (after its rank and rule)."""
    row = re.search(rf"<strong>{tier}</strong>.*?</tr>", page, re.DOTALL).group(0)
    return re.findall(r'<td class="num">([^<]*)</td>', row)[1]


def test_contacts_per_tier_come_from_a_job_with_their_age(big, editor, db_session, make_contacts, work) -> None:
    _topic, (ana, _ben) = make_contacts(2)
    db_session.add(Order(contact_id=ana.id, ordered_at=utcnow(), amount=Decimal("120.00"), currency="EUR"))
    db_session.commit()
    token = csrf(editor, "/admin/contacts/loyalty")
    editor.post("/admin/contacts/loyalty", data={"csrf_token": token, "name": "Silver", "rank": "2",
                                                 "min_value": "100", "min_orders": "1", "period_days": "365"})
    page = editor.get("/admin/contacts/loyalty").get_data(as_text=True)
    assert customers(page, "Silver") == "counting…" and 'http-equiv="refresh"' in page
    assert "Customers per tier are being counted in the background" in page

    work()      # the recompute job (Ana reaches Silver), then the count the page asked for
    editor.get("/admin/contacts/loyalty")
    work()
    page = editor.get("/admin/contacts/loyalty").get_data(as_text=True)
    assert customers(page, "Silver") == "1" and "Customers per tier are as of a few seconds ago" in page
    assert 'http-equiv="refresh"' not in page

    editor.post("/admin/contacts/loyalty", data={"csrf_token": token, "name": "Gold", "rank": "3",
                                                 "min_value": "1000", "min_orders": "1", "period_days": "365"})
    page = editor.get("/admin/contacts/loyalty").get_data(as_text=True)
    assert customers(page, "Silver") == "counting…" and customers(page, "Gold") == "counting…"
