"""The periodic-task scheduler: one run per slot across workers, catch-up after downtime, and real jobs."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from campaigns import queueing, scheduler
from campaigns.automations import runs as auto
from campaigns.composing.editor import save_campaign
from campaigns.contacts.records import save_contact
from campaigns.models import Contact, Send
from campaigns.runtime import Runtime

UTC = dt.UTC


def _jobs(runtime: Runtime) -> list[str]:
    return [j.func_name for j in runtime.queue.get_jobs()]


def test_many_workers_enqueue_each_slot_once(runtime: Runtime) -> None:
    now = dt.datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)
    other = Runtime(runtime.settings)          # a second worker process with its own connection pool
    other.use_redis(runtime.redis)
    first = scheduler.tick(runtime, now, owner="worker-a")
    assert set(first) == set(queueing.PERIODIC)  # nothing ran before: every task's current slot is due
    assert scheduler.tick(other, now + dt.timedelta(seconds=15), owner="worker-b") == []
    assert sorted(_jobs(runtime)) == sorted(t.job.path for t in queueing.PERIODIC.values())
    # The next minute: only the every-minute tasks again; the nightly one waits for tomorrow 03:15.
    every_minute = [t.name for t in queueing.PERIODIC.values() if t.every == dt.timedelta(minutes=1)]
    assert {"automations", "abtest-decisions", "transactional-resume"} <= set(every_minute)
    assert scheduler.tick(other, now + dt.timedelta(minutes=1), owner="worker-b") == every_minute
    assert scheduler.tick(runtime, dt.datetime(2026, 3, 2, 3, 14, tzinfo=UTC)).count("engagement-decay") == 0
    assert "engagement-decay" in scheduler.tick(runtime, dt.datetime(2026, 3, 2, 3, 15, tzinfo=UTC))


def test_a_missed_nightly_slot_runs_once_after_a_restart(runtime: Runtime) -> None:
    task = queueing.PERIODIC["engagement-decay"]
    assert task.slot(dt.datetime(2026, 3, 2, 1, 0, tzinfo=UTC)) == "2026-03-01"   # before 03:15: yesterday's
    assert task.slot(dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)) == "2026-03-02"
    # Workers were down at 03:15; one comes back at 09:00 and runs it, a second one does not.
    assert "engagement-decay" in scheduler.tick(runtime, dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    assert "engagement-decay" not in scheduler.tick(runtime, dt.datetime(2026, 3, 2, 9, 0, 20, tzinfo=UTC))
    assert task.next_run(dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)) == dt.datetime(2026, 3, 3, 3, 15, tzinfo=UTC)
    rows, beat = scheduler.status(runtime, dt.datetime(2026, 3, 2, 9, 1, tzinfo=UTC))
    assert beat is not None and {r.task.name for r in rows if r.last_run} >= {"engagement-decay"}


def test_a_tick_runs_automations_through_the_worker(runtime: Runtime, db_session, run_worker, outbox) -> None:
    today = dt.datetime.now(UTC).date()
    born = auto.yearly_date(today.month, today.day, 1990)
    save_contact(db_session, {"email": "birthday@example.com", "first_name": "Rosa", "timezone": "UTC",
                              "birthday": born.isoformat()})
    tpl = save_campaign(db_session, {"name": "Birthday greeting", "kind": "nurture", "subject": "Happy birthday",
                                     "mjml": "<mjml><mj-body><mj-section><mj-column><mj-text>Happy birthday, "
                                             "{{ contact.first_name }}</mj-text></mj-column></mj-section>"
                                             "</mj-body></mjml>", "all_contacts": "1"})
    db_session.commit()
    a = auto.save_automation(db_session, {"name": "Birthdays", "trigger": "date", "date_field": "birthday",
                                          "send_time": "00:00"}, [("0", str(tpl.id))])
    auto.set_active(db_session, a, True)
    db_session.commit()
    # At the start of a minute, so the tick one second later is in the same slot of every task (a 5-minute or
    # hourly task's slot could otherwise begin in between).
    now = dt.datetime.now(UTC).replace(second=0, microsecond=0)
    assert "automations" in scheduler.tick(runtime, now)
    run_worker()       # the periodic jobs, then the batch the automation queued
    assert [list(m.recipients) for m in outbox.list()] == [["birthday@example.com"]]
    assert scheduler.tick(runtime, now + dt.timedelta(seconds=1)) in ([], ["automations"])   # at most a new minute
    run_worker()
    db_session.commit()
    assert len(db_session.scalars(select(Send).join(Contact, Contact.id == Send.contact_id)).all()) == 1
