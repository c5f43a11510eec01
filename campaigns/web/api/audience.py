"""API: topics and subscriptions, segments (list, count, members), events, survey answers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select

from campaigns.composing.editor import get_campaign
from campaigns.contacts import records, segments
from campaigns.models import ApiScope, Event, EventType, SurveyAnswer
from campaigns.surveys import service as surveys
from campaigns.web.api.blueprint import bp
from campaigns.web.api.contacts import contact_out, totals
from campaigns.web.api.schemas import (
    BigId,
    ContactPage,
    PageQuery,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionsIn,
    TopicList,
    TopicOut,
    decode_cursor,
    encode_cursor,
)
from campaigns.web.api.spec import API_PREFIX, operation
from campaigns.web.context import db

# ------------------------------------------------------------------ topics and subscriptions


@operation(bp, "GET", f"{API_PREFIX}/topics", tag="Topics", summary="List topics", scope=ApiScope.CONTACTS_READ,
           response=TopicList)
def topic_list():
    return TopicList(data=[TopicOut(id=t.id, name=t.name, description=t.description, public=t.public)
                           for t in records.all_topics(db())])


def _subscriptions(contact_id: int) -> SubscriptionList:
    session = db()
    contact = records.get_contact(session, contact_id)
    return SubscriptionList(data=[
        SubscriptionOut(topic_id=t.id, topic=t.name, subscribed=bool(s and s.subscribed),
                        updated_at=s.updated_at if s else None)
        for t, s in records.subscriptions_by_topic(session, contact)])


@operation(bp, "GET", f"{API_PREFIX}/contacts/<int:contact_id>/subscriptions", tag="Topics",
           summary="A contact's subscriptions", scope=ApiScope.CONTACTS_READ, response=SubscriptionList)
def subscription_list(contact_id: int):
    """Every topic, with whether the contact is subscribed to it."""
    return _subscriptions(contact_id)


@operation(bp, "PUT", f"{API_PREFIX}/contacts/<int:contact_id>/subscriptions", tag="Topics",
           summary="Set a contact's subscriptions", scope=ApiScope.CONTACTS_WRITE, body=SubscriptionsIn,
           response=SubscriptionList)
def subscription_set(contact_id: int, body: SubscriptionsIn):
    """Subscribes the contact to exactly these topics; the others are kept as unsubscribed (history)."""
    session = db()
    contact = records.get_contact(session, contact_id)
    records.set_subscriptions(session, contact, body.topic_ids)
    session.commit()
    return _subscriptions(contact_id)


# ------------------------------------------------------------------ segments

class SegmentOut(BaseModel):
    id: int
    name: str
    description: str
    definition: dict[str, Any]
    updated_at: dt.datetime


class SegmentList(BaseModel):
    data: list[SegmentOut]


class SegmentCount(BaseModel):
    segment_id: int
    count: int = Field(description="Contacts matching right now")


@operation(bp, "GET", f"{API_PREFIX}/segments", tag="Segments", summary="List segments",
           scope=ApiScope.SEGMENTS_READ, response=SegmentList)
def segment_list():
    return SegmentList(data=[SegmentOut(id=s.id, name=s.name, description=s.description,
                                        definition=dict(s.definition or {}), updated_at=s.updated_at)
                             for s in segments.list_segments(db())])


@operation(bp, "GET", f"{API_PREFIX}/segments/<int:segment_id>/count", tag="Segments",
           summary="Count a segment's members", scope=ApiScope.SEGMENTS_READ, response=SegmentCount)
def segment_count(segment_id: int):
    session = db()
    segment = segments.get_segment(session, segment_id)
    return SegmentCount(segment_id=segment.id, count=segments.count(session, segment.definition))


@operation(bp, "GET", f"{API_PREFIX}/segments/<int:segment_id>/members", tag="Segments",
           summary="A segment's members (keyset pages)", scope=ApiScope.SEGMENTS_READ, query=PageQuery,
           response=ContactPage)
def segment_members(segment_id: int, query: PageQuery):
    session = db()
    segments.get_segment(session, segment_id)
    page = records.list_contacts(session, after=decode_cursor(query.cursor), limit=query.limit,
                                 segment_id=segment_id)
    values = totals(session, [c.id for c in page.contacts])
    return ContactPage(data=[contact_out(c, values[c.id]) for c in page.contacts],
                       next_cursor=encode_cursor(page.next_after))


# ------------------------------------------------------------------ events

class EventOut(BaseModel):
    id: int
    type: str
    occurred_at: dt.datetime
    contact_id: int | None
    campaign_id: int | None
    machine: bool = Field(description="An open or click by a proxy or scanner (never counted as engagement)")
    data: dict[str, Any]


class EventPage(BaseModel):
    data: list[EventOut]
    next_cursor: str | None


class EventQuery(PageQuery):
    type: EventType | None = None


def _event(e: Event) -> EventOut:
    return EventOut(id=e.id, type=e.type, occurred_at=e.occurred_at, contact_id=e.contact_id,
                    campaign_id=e.campaign_id, machine=bool(e.machine), data=dict(e.data or {}))


def _event_page(where: list, query: EventQuery) -> EventPage:
    """Events newest id first (ids grow with time), keyset on id."""
    after = decode_cursor(query.cursor)
    if query.type is not None:
        where.append(Event.type == query.type)
    if after is not None:
        where.append(Event.id < after)
    rows = list(db().scalars(select(Event).where(*where).order_by(Event.id.desc()).limit(query.limit + 1)))
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    return EventPage(data=[_event(e) for e in rows], next_cursor=encode_cursor(rows[-1].id) if more else None)


@operation(bp, "GET", f"{API_PREFIX}/contacts/<int:contact_id>/events", tag="Events",
           summary="A contact's events", scope=ApiScope.CONTACTS_READ, query=EventQuery, response=EventPage)
def contact_events(contact_id: int, query: EventQuery):
    """Sent, open, click, unsubscribe, bounce… newest first."""
    records.get_contact(db(), contact_id)
    return _event_page([Event.contact_id == contact_id], query)


@operation(bp, "GET", f"{API_PREFIX}/campaigns/<int:campaign_id>/events", tag="Events",
           summary="A campaign's events", scope=ApiScope.CAMPAIGNS_READ, query=EventQuery, response=EventPage)
def campaign_events(campaign_id: int, query: EventQuery):
    get_campaign(db(), campaign_id)
    return _event_page([Event.campaign_id == campaign_id], query)


# ------------------------------------------------------------------ survey answers

class AnswerOut(BaseModel):
    id: int
    survey_id: int
    question_id: int
    position: int = Field(description="0-based question number")
    contact_id: int
    campaign_id: int | None
    value: str
    answered_at: dt.datetime


class AnswerPage(BaseModel):
    data: list[AnswerOut]
    next_cursor: str | None


class AnswerQuery(PageQuery):
    contact_id: BigId | None = None


@operation(bp, "GET", f"{API_PREFIX}/surveys/<int:survey_id>/answers", tag="Surveys",
           summary="A survey's answers", scope=ApiScope.CONTACTS_READ, query=AnswerQuery, response=AnswerPage)
def survey_answers(survey_id: int, query: AnswerQuery):
    """Each recipient's current answer to each question, newest first (answering again replaces an answer)."""
    session = db()
    surveys.get_survey(session, survey_id)
    stmt = select(SurveyAnswer).where(SurveyAnswer.survey_id == survey_id)
    if query.contact_id is not None:
        stmt = stmt.where(SurveyAnswer.contact_id == query.contact_id)
    after = decode_cursor(query.cursor)
    if after is not None:
        stmt = stmt.where(SurveyAnswer.id < after)
    rows = list(session.scalars(stmt.order_by(SurveyAnswer.id.desc()).limit(query.limit + 1)))
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    return AnswerPage(data=[AnswerOut(id=a.id, survey_id=a.survey_id, question_id=a.question_id,
                                      position=a.position, contact_id=a.contact_id, campaign_id=a.campaign_id,
                                      value=a.value, answered_at=a.answered_at) for a in rows],
                      next_cursor=encode_cursor(rows[-1].id) if more else None)

