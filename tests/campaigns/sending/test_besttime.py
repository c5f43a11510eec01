"""Best time per contact on known histograms: the Dirichlet-smoothed hour-of-week choice, its fallbacks and window,
and through dispatch with real opens and clicks (machine opens not counted)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

from campaigns.models import Event, EventType, Send
from campaigns.sending import besttime, lifecycle
from campaigns.sending.besttime import HOURS, Prior, best_instant, hour_of_week
from tests.helpers import fresh

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
NOW = dt.datetime(2026, 6, 1, 18, 0, tzinfo=UTC)    # Monday 20:00 in Berlin (CEST): the next day is Tuesday
TUESDAY = 24                                          # hour-of-week of Tuesday 00:00
NINE = dt.time(9)


def counts(**at: int) -> list[int]:
    """A histogram with n events at Tuesday hour h, given as t<h>=n."""
    out = [0] * HOURS
    for key, n in at.items():
        out[TUESDAY + int(key[1:])] = n
    return out


def local(when: dt.datetime, tz: ZoneInfo = BERLIN) -> str:
    return when.astimezone(tz).strftime("%a %H:%M")


def test_without_any_history_the_chosen_local_time_is_kept() -> None:
    flat = Prior.from_counts([0] * HOURS)
    assert all(abs(q - 1 / HOURS) < 1e-12 for q in flat.q)
    assert local(best_instant(NOW, BERLIN, None, flat, NINE, 8, 20)) == "Tue 09:00"
    assert local(best_instant(NOW, BERLIN, None, flat, dt.time(9, 30), 8, 20)) == "Tue 09:30"


def test_a_reader_without_history_gets_the_lists_best_hour() -> None:
    prior = Prior.from_counts(counts(t10=100, t14=40))
    assert local(best_instant(NOW, BERLIN, None, prior, NINE, 8, 20)) == "Tue 10:00"


def test_one_open_does_not_outweigh_a_list_with_a_clear_habit_but_ten_do() -> None:
    prior = Prior.from_counts(counts(t10=100))
    # p_7 = (1 + 20/268) / 21 = 0.051 < p_10 = (0 + 20·101/268) / 21 = 0.359: the list's hour.
    assert local(best_instant(NOW, BERLIN, counts(t7=1), prior, NINE, 6, 12)) == "Tue 10:00"
    # p_7 = (10 + 20/268) / 30 = 0.336 > p_10 = (20·101/268) / 30 = 0.251: their own.
    assert local(best_instant(NOW, BERLIN, counts(t7=10), prior, NINE, 6, 12)) == "Tue 07:00"


def test_the_choice_stays_in_the_marketers_window() -> None:
    prior = Prior.from_counts([0] * HOURS)
    late_reader = counts(t12=2)
    late_reader[22] = 30    # Monday 22:00: two hours after NOW, the next 22:00 there is
    assert local(best_instant(NOW, BERLIN, late_reader, prior, NINE, 8, 20)) == "Tue 12:00"
    assert local(best_instant(NOW, BERLIN, late_reader, prior, NINE, 8, 24)) == "Mon 22:00"


def test_half_hour_zones_and_the_hour_of_week_in_the_readers_zone() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    # Monday 18:00 UTC is Monday 23:30 in Kolkata; Tuesday 07:00 there is 01:30 UTC.
    prior = Prior.from_counts([0] * HOURS)
    when = best_instant(NOW, kolkata, counts(t7=3), prior, NINE, 6, 12)
    assert when == dt.datetime(2026, 6, 2, 1, 30, tzinfo=UTC)
    assert hour_of_week(dt.datetime(2026, 6, 2, 1, 30, tzinfo=UTC), kolkata) == TUESDAY + 7


def test_a_best_time_campaign_moves_readers_with_history_through_dispatch(
        runtime, db_session, make_contacts, make_campaign, run_worker) -> None:
    topic, contacts = make_contacts(4)
    habit, fresh_reader, bot_only, morning = contacts
    for c in contacts:
        c.timezone = "Europe/Berlin"
    past = [NOW - dt.timedelta(days=7 * w) for w in range(1, 9)]   # eight Mondays before
    for monday in past:
        tuesday = monday + dt.timedelta(days=1)
        # The list: most readers open on Tuesday at 11:00 Berlin (09:00 UTC in summer).
        db_session.add(Event(contact_id=morning.id, type=EventType.OPEN, occurred_at=tuesday.replace(hour=9)))
        db_session.add(Event(contact_id=bot_only.id, type=EventType.OPEN, occurred_at=tuesday.replace(hour=9)))
        # One reader opens and clicks on Tuesday at 17:00 Berlin (15:00 UTC).
        db_session.add(Event(contact_id=habit.id, type=EventType.OPEN, occurred_at=tuesday.replace(hour=15)))
        db_session.add(Event(contact_id=habit.id, type=EventType.CLICK, occurred_at=tuesday.replace(hour=15)))
        # A scanner "opens" for bot_only at 19:00 Berlin every week: not a human, never counted.
        for _ in range(5):
            db_session.add(Event(contact_id=bot_only.id, type=EventType.OPEN, machine=True,
                                 occurred_at=tuesday.replace(hour=17)))
    campaign = make_campaign([topic])
    campaign.local_time, campaign.best_time, campaign.best_from, campaign.best_to = "09:00", True, 8, 20
    db_session.commit()
    with time_machine.travel(NOW, tick=True):
        lifecycle.start(db_session, runtime, campaign)
        db_session.commit()
        run_worker()
    fresh(db_session)
    got = {cid: local(when) for cid, when in db_session.execute(
        select(Send.contact_id, Send.not_before).where(Send.campaign_id == campaign.id))}
    assert got == {habit.id: "Tue 17:00", fresh_reader.id: "Tue 11:00", bot_only.id: "Tue 11:00",
                   morning.id: "Tue 11:00"}
    assert besttime.list_prior(db_session, NOW, lambda _name: BERLIN).events == 8 * 4
