"""The automations list says what happened to an automation's mail (sent, held, queued, failed apart, from the send
table) and, while an occurrence is still going out in later time zones, that it is running now."""

from __future__ import annotations

import datetime as dt
import html
import re
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from campaigns.automations import runs as auto
from campaigns.composing.editor import save_campaign
from campaigns.models import AutomationRun, Send
from tests.campaigns.automations.test_automations import automation, person
from tests.helpers import fresh

# Kiritimati (UTC+14) is always 25 hours ahead of Pago Pago (UTC-11): when a yearly date has begun in Kiritimati it
# has not begun in Pago Pago, whatever the clock says, so the occurrence is always "running now" in this test.
AHEAD, BEHIND = "Pacific/Kiritimati", "Pacific/Pago_Pago"
GREETING = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Happy day, {{ contact.first_name }}! You are one of {{ 12 // (contact.first_name|length - 4) }}.</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


def row_of(page: str, name: str) -> list[str]:
    """The cells of an automation's row in the list."""
    row = re.search(rf"<tr><td><a [^>]*>{re.escape(name)}</a>.*?</tr>", page, re.DOTALL).group(0)
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]


def test_list_shows_outcomes_apart_and_running_now_across_time_zones(
        editor, db_session, runtime, outbox, work) -> None:
    today_ahead = dt.datetime.now(ZoneInfo(AHEAD)).date()
    template = save_campaign(db_session, {"name": "Greeting", "subject": "Hello", "mjml": GREETING,
                                          "all_contacts": "1"})
    db_session.commit()
    person(db_session, "ana@example.com", tz=AHEAD)                     # sent
    person(db_session, "pausing@example.com", tz=AHEAD,                 # held: paused their mail
           paused_until=dt.datetime.now(dt.UTC) + dt.timedelta(days=3))
    person(db_session, "mara@example.com", tz=AHEAD)                    # failed: "Mara" breaks the template
    person(db_session, "later@example.com", tz=BEHIND)                  # not due yet
    automation(db_session, template, name="Day greeting", trigger="yearly",
               yearly_date=f"{today_ahead:%m-%d}", send_time="00:00")
    auto.run_due(runtime)
    work()
    person(db_session, "newcomer@example.com", tz=AHEAD)                # queued: due at the next tick, not sent yet
    auto.run_due(runtime)

    page = html.unescape(editor.get("/admin/automations").get_data(as_text=True))
    cells = row_of(page, "Day greeting")
    next_run, occurrences, sent, held, queued, failed = cells[3:9]
    assert "running now: out in 1 of 2 time zones, 1 to go" in next_run and BEHIND in next_run
    assert f"next on {today_ahead.replace(year=today_ahead.year + 1):%a %Y-%m-%d}" in next_run
    assert (occurrences, sent, held, queued, failed) == ("4", "1", "1", "1", "1")
    # The same figures at the receiving end and in the send table.
    assert [m.recipients[0] for m in (outbox.get(e.key) for e in outbox.list())] == ["ana@example.com"]
    campaign_id = fresh(db_session).scalar(select(AutomationRun.campaign_id))
    table = dict(db_session.execute(select(Send.status, func.count()).where(Send.campaign_id == campaign_id)
                                    .group_by(Send.status)).all())
    assert table == {"sent": 1, "held": 1, "queued": 1, "failed": 1}
    edit = html.unescape(editor.get(f"/admin/automations/{db_session.scalar(select(AutomationRun.automation_id))}")
                         .get_data(as_text=True))
    assert "running now: out in 1 of 2 time zones" in edit
