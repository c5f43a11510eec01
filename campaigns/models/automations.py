"""Automations (date, calendar, cadence, welcome) and their keyed occurrences."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.db import Base
from campaigns.models.columns import BigId, UTCDateTime, utcnow
from campaigns.models.core import Campaign

__all__ = ["Automation", "AutomationOccurrence", "AutomationOrderOccurrence", "AutomationRun", "AutomationStep",
           "AutomationTrigger"]


class AutomationTrigger(StrEnum):
    DATE = "date"          # a contact date field (birthday, first order, a date attribute), N days before or on it
    YEARLY = "yearly"      # the same calendar date every year (holiday greetings)
    CRON = "cron"          # a recurring cron-like schedule (the first Monday of the month)
    CADENCE = "cadence"    # contacts not mailed in N days
    WELCOME = "welcome"    # a series of steps after someone subscribes
    ORDER = "order"        # post-purchase: steps N hours/days after an order is placed (campaigns.automations.orders)
    TIER = "tier"          # a contact reached a higher loyalty tier (campaigns.orders.tiers): a thank-you


class Automation(Base):
    """A rule that sends a template campaign to the contacts it finds due, at most once per occurrence."""

    __tablename__ = "automation"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    trigger: Mapped[AutomationTrigger] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    # DATE: "birthday", "first_order" or "attribute:<key>" (an ISO date in contact.attributes), days_before 0..365.
    date_field: Mapped[str] = mapped_column(String(120), default="")
    days_before: Mapped[int] = mapped_column(Integer, default=0)
    # YEARLY: month and day (29 February falls on 28 February in other years).
    month: Mapped[int | None] = mapped_column(Integer)
    day: Mapped[int | None] = mapped_column(Integer)
    # CRON: five fields, evaluated in each contact's time zone, at most once a day per contact.
    cron: Mapped[str] = mapped_column(String(120), default="")
    # CADENCE: not mailed in this many days.
    inactive_days: Mapped[int] = mapped_column(Integer, default=30)
    # DATE, YEARLY, CADENCE: the local time of day (minutes after midnight in the contact's zone) mail goes out.
    send_minute: Mapped[int] = mapped_column(Integer, default=9 * 60)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # WELCOME greets only people who subscribe after this moment (switching it on never mails the old list).
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str] = mapped_column(Text, default="")
    # ORDER: which orders start it (amount bounds inclusive, in any currency; a product tag; a contact's first order).
    min_amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    max_amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    product_tag: Mapped[str] = mapped_column(String(100), default="", server_default="")
    first_order_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    steps: Mapped[list[AutomationStep]] = relationship(
        back_populates="automation", cascade="all, delete-orphan", order_by="AutomationStep.position")


class AutomationStep(Base):
    """What an automation sends: one step, or a welcome series' steps (day 0, 3, 10…), each a template campaign."""

    __tablename__ = "automation_step"

    id: Mapped[int] = mapped_column(primary_key=True)
    automation_id: Mapped[int] = mapped_column(ForeignKey("automation.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    delay_days: Mapped[int] = mapped_column(Integer, default=0)
    # ORDER: hours on top of delay_days after the order (a thank-you at 0, a follow-up after 3 days = 72 hours).
    delay_hours: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A draft campaign used as the mail's template: each run copies its content (kind, subject, MJML, audience).
    template_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))

    automation: Mapped[Automation] = relationship(back_populates="steps")
    template: Mapped[Campaign | None] = relationship()

    __table_args__ = (UniqueConstraint("automation_id", "position"),)


class AutomationRun(Base):
    """The campaign one step sends for one occurrence date (contacts in later time zones join it)."""

    __tablename__ = "automation_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    automation_id: Mapped[int] = mapped_column(ForeignKey("automation.id", ondelete="CASCADE"))
    step_id: Mapped[int] = mapped_column(ForeignKey("automation_step.id", ondelete="CASCADE"))
    occurrence_date: Mapped[dt.date] = mapped_column(Date)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    campaign: Mapped[Campaign | None] = relationship()

    __table_args__ = (
        UniqueConstraint("step_id", "occurrence_date"),
        Index("ix_automation_run_automation", "automation_id", "occurrence_date"),
        Index("ix_automation_run_campaign", "campaign_id"),     # which run a campaign is (each batch asks)
    )


class AutomationOccurrence(Base):
    """One contact's occurrence of an automation: the unique key makes restarts and concurrent ticks send once."""

    __tablename__ = "automation_occurrence"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    automation_id: Mapped[int] = mapped_column(ForeignKey("automation.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    occurrence_date: Mapped[dt.date] = mapped_column(Date)
    run_id: Mapped[int] = mapped_column(ForeignKey("automation_run.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("automation_id", "contact_id", "occurrence_date"),
        Index("ix_automation_occurrence_run", "run_id", "contact_id"),
        Index("ix_automation_occurrence_contact", "contact_id", "automation_id", "occurrence_date"),
    )


class AutomationOrderOccurrence(Base):
    """One order's occurrence of one step of a post-purchase automation: unique per (step, order), so a retried
    webhook, a replayed API call or concurrent ticks never mail a step twice for one order."""

    __tablename__ = "automation_order_occurrence"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    automation_id: Mapped[int] = mapped_column(ForeignKey("automation.id", ondelete="CASCADE"))
    step_id: Mapped[int] = mapped_column(ForeignKey("automation_step.id", ondelete="CASCADE"))
    order_id: Mapped[int] = mapped_column(BigId, ForeignKey("order.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(ForeignKey("automation_run.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("step_id", "order_id"),
        Index("ix_automation_order_occurrence_run", "run_id", "contact_id"),
        Index("ix_automation_order_occurrence_order", "automation_id", "order_id"),
    )
