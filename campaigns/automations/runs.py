"""Automations: date triggers, yearly and cron calendars, cadence watch and welcome series.

Every tick (campaigns.scheduler, once a minute) run_due() asks each active automation which contacts are due *now*,
in each contact's own time zone, and for which occurrence date. Each (automation, contact, occurrence date) is a
row with a unique key: only the rows this call inserted are sent, so restarts, repeated and concurrent ticks never
send an occurrence twice. A step's occurrence date has one run campaign, a copy of the step's template (same
content, so the compiled form is shared), which goes out through the normal send path and policy
(sending.dispatch_to). Calendar mail is sent on the day only: a day missed entirely (no worker running) is skipped.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.automations import purchases
from campaigns.automations.overview import (  # noqa: F401 - re-exported: the admin and tests use them here
    AutomationSummary,
    CadencePage,
    RunRow,
    not_contacted,
    overview,
    runs_of,
)
from campaigns.automations.triggers import (  # noqa: F401 - re-exported: the admin and tests use them here
    DATE_FIELDS,
    audience_zones,
    delay_label,
    describe,
    due_now,
    month_days,
    next_run,
    quiet_since,
    validate_cron,
    yearly_date,
    zone,
)
from campaigns.composing import editor as campaign_service
from campaigns.db import parse_id
from campaigns.errors import NotFound, RapportError, ValidationError
from campaigns.models import (
    Automation,
    AutomationOccurrence,
    AutomationOrderOccurrence,
    AutomationRun,
    AutomationStep,
    AutomationTrigger,
    Campaign,
    CampaignStatus,
    utcnow,
)
from campaigns.runtime import Runtime
from campaigns.sending import lifecycle as sending
from mailer.compose import TemplateError

logger = logging.getLogger(__name__)

MAX_STEPS = 5
REPAIR_WINDOW = dt.timedelta(days=2)      # occurrences younger than this get their send row if it went missing
HELD_VALIDITY = dt.timedelta(days=3)      # mail held by the policy still goes out this long after its run began
_ATTRIBUTE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_- .")


# ---------------------------------------------------------------- validation and saving

def _int(data: Mapping[str, Any], name: str, default: int, lo: int, hi: int, label: str) -> int:
    raw = str(data.get(name, "") or "").strip()
    if not raw:
        return default
    if not raw.lstrip("-").isdigit() or len(raw) > 6 or not lo <= int(raw) <= hi:
        raise ValidationError(f"{label} must be a whole number from {lo} to {hi}", field=name)
    return int(raw)


def _send_minute(raw: str) -> int:
    raw = raw.strip() or "09:00"
    try:
        t = dt.time.fromisoformat(raw)
    except ValueError:
        raise ValidationError("enter the send time as HH:MM, such as 09:00", field="send_time") from None
    return t.hour * 60 + t.minute


def template_choices(session: Session, include: Iterable[int] = ()) -> list[Campaign]:
    """Campaigns an automation may use as its mail: drafts that are not themselves automation runs."""
    is_run = exists().where(AutomationRun.campaign_id == Campaign.id)
    cond = and_(Campaign.status == CampaignStatus.DRAFT, ~is_run)
    ids = [i for i in include if i]
    if ids:
        cond = or_(cond, Campaign.id.in_(ids))
    return list(session.scalars(select(Campaign).where(cond).order_by(Campaign.name)))


def _template(session: Session, raw: Any, field: str) -> Campaign:
    raw = str(raw or "").strip()
    campaign = session.get(Campaign, ident) if (ident := parse_id(raw)) is not None else None
    if campaign is None:
        raise ValidationError("choose the mail to send (a draft campaign used as template)", field=field)
    if session.scalar(select(AutomationRun.id).where(AutomationRun.campaign_id == campaign.id).limit(1)):
        raise ValidationError(f"“{campaign.name}” was sent by an automation; choose a draft as template", field=field)
    if not campaign.all_contacts and not campaign.topics and campaign.segment_id is None:
        raise ValidationError(f"the template “{campaign.name}” has no audience: give it topics, a segment or "
                              "“all subscribed contacts” (the automation mails only that audience)", field=field)
    return campaign


def save_automation(session: Session, data: Mapping[str, Any], steps: list[tuple[str, str]],
                    automation: Automation | None = None) -> Automation:
    """Create or update an automation from form values; steps are (delay days, template id) pairs.

    Steps are updated in place (by position), so the history of what each step sent stays attached to it.
    """
    name = str(data.get("name", "")).strip()
    if not name or len(name) > 200:
        raise ValidationError("give the automation a name (at most 200 characters)", field="name")
    clash = session.scalar(select(Automation.id).where(Automation.name == name))
    if clash is not None and (automation is None or clash != automation.id):
        raise ValidationError(f"an automation called “{name}” already exists", field="name")
    try:
        trigger = AutomationTrigger(str(data.get("trigger", "")))
    except ValueError:
        raise ValidationError("choose what starts the automation", field="trigger") from None
    if automation is not None and automation.trigger != trigger and automation.steps and \
            session.scalar(select(AutomationRun.id).where(AutomationRun.automation_id == automation.id).limit(1)):
        raise ValidationError("this automation has already sent mail; create a new one for another trigger",
                              field="trigger")
    obj = automation or Automation(name=name, trigger=trigger, active=False)
    obj.name, obj.trigger = name, trigger
    obj.send_minute = _send_minute(str(data.get("send_time", "")))
    if trigger == AutomationTrigger.DATE:
        field = str(data.get("date_field", ""))
        if field not in DATE_FIELDS:
            raise ValidationError("choose the contact date: birthday, first order or a date attribute",
                                  field="date_field")
        if field == "attribute":
            key = str(data.get("attribute_key", "")).strip()
            if not key or len(key) > 100 or not set(key) <= _ATTRIBUTE_CHARS:
                raise ValidationError("name the date attribute (letters, digits, _ - . and spaces), such as "
                                      "contract_start", field="attribute_key")
            field = f"attribute:{key}"
        obj.date_field = field
        obj.days_before = _int(data, "days_before", 0, 0, 365, "Days before")
    elif trigger == AutomationTrigger.YEARLY:
        raw = str(data.get("yearly_date", "")).strip()
        try:
            month, day = (int(p) for p in raw.split("-")) if raw.count("-") == 1 else (0, 0)
            dt.date(2024, month, day)   # a leap year: 02-29 is a real yearly date (28 February in other years)
        except ValueError:
            raise ValidationError("enter the yearly date as MM-DD, such as 12-24", field="yearly_date") from None
        obj.month, obj.day = month, day
    elif trigger == AutomationTrigger.CRON:
        obj.cron = validate_cron(str(data.get("cron", "")))
    elif trigger == AutomationTrigger.CADENCE:
        obj.inactive_days = _int(data, "inactive_days", 30, 1, 3650, "Days without mail")
    elif trigger == AutomationTrigger.ORDER:
        purchases.apply_filters(obj, data)
    series = trigger in (AutomationTrigger.WELCOME, AutomationTrigger.ORDER)
    wanted = [(d.strip(), t) for d, t in steps if str(t or "").strip()]
    if not wanted:
        raise ValidationError("choose the mail to send", field="template_0")
    if not series:
        wanted = wanted[:1]
    if len(wanted) > MAX_STEPS:
        raise ValidationError(f"a series has at most {MAX_STEPS} steps", field="template_0")
    parsed: list[tuple[int, int, Campaign]] = []
    for i, (delay, template_id) in enumerate(wanted):
        days, hours = 0, 0
        if trigger == AutomationTrigger.WELCOME:
            days = _int({"d": delay}, "d", 0, 0, 365, f"Step {i + 1}'s day")
        elif trigger == AutomationTrigger.ORDER:
            days, hours = purchases.parse_delay(delay, f"delay_{i}")
        parsed.append((days, hours, _template(session, template_id, f"template_{i}")))
    delays = [d * 24 + h for d, h, _ in parsed]
    if len(set(delays)) != len(delays):
        raise ValidationError("two steps of the series fall at the same time; give each step its own delay"
                              if trigger == AutomationTrigger.ORDER else
                              "two steps of the series are on the same day; give each step its own day",
                              field="template_0")
    parsed.sort(key=lambda p: p[0] * 24 + p[1])
    if obj.id is None:
        session.add(obj)
    existing = {s.position: s for s in obj.steps}
    for position, (days, hours, template) in enumerate(parsed):
        step = existing.pop(position, None) or AutomationStep(position=position)
        step.delay_days, step.delay_hours, step.template = days, hours, template
        if step not in obj.steps:
            obj.steps.append(step)
    for step in existing.values():
        obj.steps.remove(step)
    session.flush()
    return obj


def set_active(session: Session, automation: Automation, active: bool) -> None:
    """Switch an automation on or off; a welcome series greets only those who subscribe after switching it on."""
    if active and not automation.steps:
        raise ValidationError("choose the mail to send before switching the automation on")
    if active and not automation.active:
        automation.activated_at = utcnow()
        automation.last_error = ""
    automation.active = active
    session.flush()


def get_automation(session: Session, automation_id: int) -> Automation:
    obj = session.get(Automation, automation_id)
    if obj is None:
        raise NotFound(f"automation {automation_id} not found")
    return obj

# ---------------------------------------------------------------- runs and occurrences

def _run_for(session: Session, automation: Automation, step: AutomationStep, template: Campaign,
             day: dt.date) -> AutomationRun:
    """The step's run for that occurrence date, creating its campaign (a copy of the template) the first time.

    Flushes in a savepoint (another tick may create the same run at the same moment); the caller commits.
    """
    run = session.scalar(select(AutomationRun).where(AutomationRun.step_id == step.id,
                                                     AutomationRun.occurrence_date == day))
    if run is not None:
        return run
    label = f" · day {step.delay_days}" if automation.trigger == AutomationTrigger.WELCOME else \
        f" · {delay_label(step)}" if automation.trigger == AutomationTrigger.ORDER else ""
    valid = utcnow() + HELD_VALIDITY   # the run is made when its first contacts fall due
    if template.valid_until is not None:
        valid = min(valid, template.valid_until)
    copy = Campaign(
        name=f"{automation.name}{label} · {day.isoformat()}"[:200], kind=template.kind, subject=template.subject,
        preheader=template.preheader, from_name=template.from_name, from_email=template.from_email,
        reply_to=template.reply_to, mjml=template.mjml, text_body=template.text_body,
        all_contacts=template.all_contacts, relay=template.relay, coupon_pool_id=template.coupon_pool_id,
        survey_id=template.survey_id, segment_id=template.segment_id, valid_until=valid,
        status=CampaignStatus.DRAFT, status_reason=f"sent by the automation “{automation.name}”")
    copy.topics = list(template.topics)
    try:
        with session.begin_nested():
            session.add(copy)
            session.flush()
            run = AutomationRun(automation_id=automation.id, step_id=step.id, occurrence_date=day,
                                campaign_id=copy.id)
            session.add(run)
    except IntegrityError:   # another tick created it a moment ago
        run = session.scalar(select(AutomationRun).where(AutomationRun.step_id == step.id,
                                                         AutomationRun.occurrence_date == day))
        if run is None:
            raise
    return run


def _insert_occurrences(session: Session, automation_id: int, run_id: int, day: dt.date,
                        contact_ids: list[int]) -> list[int]:
    """Insert the occurrences; returns the contacts whose row is new (only they are sent). The caller commits."""
    dialect_insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    new: list[int] = []
    now = utcnow()
    for i in range(0, len(contact_ids), 1000):
        rows = [{"automation_id": automation_id, "contact_id": cid, "occurrence_date": day, "run_id": run_id,
                 "created_at": now} for cid in contact_ids[i:i + 1000]]
        stmt = dialect_insert(AutomationOccurrence).values(rows).on_conflict_do_nothing(
            index_elements=["automation_id", "contact_id", "occurrence_date"]).returning(
            AutomationOccurrence.contact_id)
        new.extend(session.scalars(stmt))
    return new


@dataclass
class RunResult:
    automations: int = 0
    queued: int = 0
    errors: int = 0


def run_due(rt: Runtime, now: dt.datetime | None = None) -> dict[str, int]:
    """Send every active automation's due occurrences (the periodic task); returns counts."""
    now = now or utcnow()
    result = RunResult()
    with rt.session_factory() as session:
        ids = list(session.scalars(select(Automation.id).where(Automation.active.is_(True)).order_by(Automation.id)))
    for automation_id in ids:
        result.automations += 1
        try:
            result.queued += run_automation(rt, automation_id, now)
        except (RapportError, TemplateError) as exc:
            result.errors += 1
            with rt.session_factory() as session:
                automation = session.get(Automation, automation_id)
                if automation is not None:
                    automation.last_error = f"{now:%Y-%m-%d %H:%M} UTC: {exc}"[:2000]
                    automation.last_checked_at = now
                    session.commit()
            logger.warning("automation %s: %s", automation_id, exc)
    return {"automations": result.automations, "queued": result.queued, "errors": result.errors}


def run_automation(rt: Runtime, automation_id: int, now: dt.datetime) -> int:
    """One automation's tick: due contacts -> new occurrences -> their run campaigns; returns new send rows.

    Several transactions of its own session: the run campaign and then the occurrences are committed before their
    send rows are queued (sending.dispatch_to), so a crash in between leaves occurrences a later tick repairs.
    """
    queued = 0
    with rt.session_factory() as session:
        automation = get_automation(session, automation_id)
        for step in list(automation.steps):
            template = step.template
            if template is None:
                raise ValidationError(f"step {step.position + 1}'s template campaign was deleted; "
                                      "choose another mail")
            campaign_service.validate(template)   # a broken template stops here, before anyone is marked as sent
            if automation.trigger == AutomationTrigger.ORDER:
                for day, pairs in sorted(purchases.due_orders(session, automation, step, now).items()):
                    run = _run_for(session, automation, step, template, day)
                    session.commit()
                    new = purchases.insert_occurrences(session, automation.id, step.id, run.id, pairs)
                    session.commit()
                    if new and run.campaign_id is not None:
                        queued += sending.dispatch_to(rt, run.campaign_id, new)
                    automation = get_automation(session, automation_id)
                continue
            for day, contact_ids in sorted(due_now(session, automation, step, template, now).items()):
                if not contact_ids:
                    continue
                run = _run_for(session, automation, step, template, day)
                session.commit()
                new = _insert_occurrences(session, automation.id, run.id, day, sorted(set(contact_ids)))
                session.commit()
                if new and run.campaign_id is not None:
                    queued += sending.dispatch_to(rt, run.campaign_id, new)
                automation = get_automation(session, automation_id)
        missing = purchases.missing_sends(session, AutomationOccurrence, automation_id, now - REPAIR_WINDOW)
        for campaign_id, ids in purchases.missing_sends(session, AutomationOrderOccurrence, automation_id,
                                                        now - REPAIR_WINDOW).items():
            missing.setdefault(campaign_id, []).extend(ids)
        session.commit()   # end the read before the sends are queued
        queued += sum(sending.dispatch_to(rt, cid, ids) for cid, ids in missing.items())
        automation = get_automation(session, automation_id)
        automation.last_checked_at = now
        automation.last_error = ""
        session.commit()
    if queued:
        logger.info("automation %s: %d messages queued", automation_id, queued)
    return queued


def resume_run(rt: Runtime, session: Session, campaign_id: int) -> int:
    """Resume a paused run campaign for the contacts it already has (never its template's whole audience).

    The campaign page's Resume walks the audience again (sending.start -> dispatch), which for a run would mail
    everyone the template reaches; this re-enqueues batches over the run's own queued rows. Returns their number.
    """
    run = session.scalar(select(AutomationRun).where(AutomationRun.campaign_id == campaign_id))
    if run is None:
        raise NotFound(f"campaign {campaign_id} is not an automation run")
    campaign = campaign_service.get_campaign(session, campaign_id)
    if campaign.status != CampaignStatus.PAUSED:
        raise ValidationError(f"only a paused run can be resumed (this one is {campaign.status})")
    campaign_service.validate(campaign)
    return sending.resume_listed(rt, session, campaign_id)
