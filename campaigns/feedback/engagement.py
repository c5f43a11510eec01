"""Opens and clicks become events and fold into the contact row; machine opens and scanner clicks are told apart.

Machine (recorded with ``machine=True``, never counted as engagement):

* opens through Apple Mail Privacy Protection (the bare ``Mozilla/5.0`` agent or Apple's 17.0.0.0/8 network),
  Gmail's and Yahoo's image proxies, and known security scanners, link checkers and bots (by user agent);
* opens by one fetcher (same network and agent) for many recipients of a campaign within seconds of delivery;
* clicks by scanner agents, HEAD requests, and clicks on all links of a message within two seconds.

Engagement score (human events only), a sum that halves every 30 days::

    score(t) = sum over human events e of  weight(e) * 0.5 ** ((t - t_e) / 30 days)
    weight: open 1, click 3 (a click also counts as an open when none was recorded), reply 5 (a person wrote
    back: the strongest signal; auto-replies never count, campaigns.replies), entered a prize draw 3 (confirmed
    on the draw's page by the person, campaigns.draws)

It is stored as ``contact.engagement_score`` exact as of ``contact.engagement_at`` and updated incrementally;
:func:`current_score` decays it to any later moment and :func:`decay_scores` rewrites it for everyone.
``contact.last_opened_at`` and ``last_clicked_at`` are human events only too. When events already folded in are
reclassified as machine events later (a crowd of opens turns out to be one prefetching proxy, a scanner's link sweep
spans two drains), :func:`recompute_engagement` rebuilds those contacts' columns from their remaining human events.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, insert, select, update
from sqlalchemy.orm import Session

from campaigns.composing import editor as campaign_service
from campaigns.feedback import hits as hit_queue
from campaigns.feedback import tx_hits, webhooks
from campaigns.feedback.hits import Hit, HitKind, HitSource
from campaigns.feedback.machines import fetcher_of, machine_agent
from campaigns.models import Contact, Event, EventType, Link, Send, utcnow
from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)

HALF_LIFE = dt.timedelta(days=30)
WEIGHTS = {EventType.OPEN: 1.0, EventType.CLICK: 3.0, EventType.REPLY: 5.0, EventType.DRAW_ENTRY: 3.0}
PREFETCH_AFTER_DELIVERY = dt.timedelta(minutes=5)   # "seconds after delivery", generously
CROWD_WINDOW = dt.timedelta(seconds=60)
CROWD_SIZE = 5                                      # distinct recipients from one fetcher in the window
SCANNER_CLICK_WINDOW = dt.timedelta(seconds=2)

def decayed(score: float, since: dt.datetime | None, now: dt.datetime) -> float:
    """score (exact at since) decayed to now."""
    if since is None or now <= since:
        return score
    return score * 0.5 ** ((now - since) / HALF_LIFE)


def current_score(contact: Contact, now: dt.datetime | None = None) -> float:
    """The contact's engagement score at now (default: this moment)."""
    return decayed(contact.engagement_score or 0.0, contact.engagement_at, now or utcnow())


def add_to_score(contact: Contact, weight: float, at: dt.datetime) -> None:
    """Fold one human event of weight at time `at` into the stored score (out-of-order events are fine)."""
    ref = contact.engagement_at
    if ref is None or at >= ref:
        contact.engagement_score = decayed(contact.engagement_score or 0.0, ref, at) + weight
        contact.engagement_at = at
    else:
        contact.engagement_score = (contact.engagement_score or 0.0) + weight * 0.5 ** ((ref - at) / HALF_LIFE)


def decay_scores(rt: Runtime, now: dt.datetime | None = None, *, page: int = 1000) -> int:
    """Rewrite every stored score as of now (a nightly job), so segments can compare the column directly.

    One transaction per page of its own session: a long write would make unsubscribes wait on SQLite.
    """
    now = now or utcnow()
    last = 0
    changed = 0
    with rt.session_factory() as session:
        while True:
            rows = session.execute(select(Contact.id, Contact.engagement_score, Contact.engagement_at)
                                   .where(Contact.id > last, Contact.engagement_at.is_not(None))
                                   .order_by(Contact.id).limit(page)).all()
            if not rows:
                break
            session.execute(update(Contact), [
                {"id": cid, "engagement_score": round(decayed(score, at, now), 6), "engagement_at": now}
                for cid, score, at in rows if at < now])
            session.commit()
            changed += len(rows)
            last = rows[-1][0]
    return changed


# ---------------------------------------------------------------- writing hits


def drain_hits(rt: Runtime) -> int:
    """Write the queued tracking hits as events, one transaction per batch; returns hits written."""

    def write(batch: Sequence[Hit], replay: bool) -> int:
        with rt.session_factory() as session:
            written = record_hits(session, batch, replay)
            session.commit()
            return written

    return hit_queue.drain(rt, write)


@dataclass
class _Row:
    hit: Hit
    send: tuple[int, int, int, dt.datetime | None]   # id, campaign_id, contact_id, sent_at
    at: dt.datetime
    fetcher: str
    reason: str = ""
    url: str = ""


def record_hits(session: Session, hits: Sequence[Hit], replay: bool = False) -> int:
    """Write a batch of tracking hits as events, classify machines and update contacts; returns events.

    Flushes; the caller commits (drain_hits, one transaction per batch).
    """
    # Replays (an interrupted drain, a relay retrying its webhook) must not count twice.
    seen = set(session.scalars(select(Event.dedupe_key).where(Event.dedupe_key.in_([h.key for h in hits]))))
    if seen and not replay:
        logger.info("%d tracking hits were already recorded", len(seen))
    unique: list[Hit] = []
    for h in hits:
        if h.key and h.key not in seen:
            seen.add(h.key)
            unique.append(h)
    if not unique:
        return 0
    hits = [h for h in unique if not h.tx_id]    # a transactional message's hits: campaigns.feedback.tx_hits
    tx_events, tx_swept = tx_hits.events(session, [h for h in unique if h.tx_id])
    sends = {r[0]: tuple(r) for r in session.execute(
        select(Send.id, Send.campaign_id, Send.contact_id, Send.sent_at)
        .where(Send.id.in_({h.send_id for h in hits})))}
    links = {r[0]: (r[1], r[2]) for r in session.execute(
        select(Link.id, Link.campaign_id, Link.url).where(Link.id.in_({h.link_id for h in hits if h.link_id})))}
    opens: list[_Row] = []
    clicks: list[_Row] = []
    for h in hits:
        send = sends.get(h.send_id)
        if send is None:
            logger.info("tracking hit for unknown send %s dropped", h.send_id)
            continue
        row = _Row(h, send, tx_hits.moment(h.at), fetcher_of(h.user_agent, h.ip), machine_agent(h.user_agent, h.ip))
        if h.kind == HitKind.CLICK:
            link = links.get(h.link_id)
            if link is None or link[0] != send[1]:
                logger.warning("click on link %s not of campaign %s dropped", h.link_id, send[1])
                continue
            row.url = link[1]
            if h.head:
                row.reason = row.reason or "HEAD request"
            clicks.append(row)
        else:
            opens.append(row)
    reclassified = _flag_crowds(session, opens) | _flag_link_sweeps(session, clicks, links) | tx_swept
    events = [_event(r, EventType.OPEN) for r in opens] + [_event(r, EventType.CLICK) for r in clicks]
    events += _implied_opens(session, clicks, opens) + tx_events
    if events:
        session.execute(insert(Event), events)
        webhooks.opens_and_clicks(session, events)
    _update_contacts(session, events)
    if reclassified:
        session.flush()
        recompute_engagement(session, reclassified)
    session.flush()
    return len(events)


def _event(row: _Row, type_: EventType) -> dict:
    data: dict = {"ua": row.hit.user_agent[:300]}
    if row.reason:
        data["machine"] = row.reason
    if row.hit.source != HitSource.WEB:
        data["source"] = row.hit.source
    if type_ == EventType.CLICK:
        data.update(link_id=row.hit.link_id, url=row.url[:500])
    return {"contact_id": row.send[2], "campaign_id": row.send[1], "send_id": row.send[0], "type": type_,
            "occurred_at": row.at, "data": data, "machine": bool(row.reason), "fetcher": row.fetcher,
            "dedupe_key": row.hit.key, "tx_message_id": None}


def _flag_crowds(session: Session, opens: list[_Row]) -> set[int]:
    """One fetcher opening for many recipients right after delivery is a prefetching proxy or scanner.

    Returns the contacts whose already recorded human opens were reclassified as machine opens.
    """
    affected: set[int] = set()
    groups: dict[tuple[int, str], list[_Row]] = defaultdict(list)
    for r in opens:
        sent_at = r.send[3]
        if not r.reason and sent_at is not None and r.at - sent_at <= PREFETCH_AFTER_DELIVERY:
            groups[(r.send[1], r.fetcher)].append(r)
    for (campaign_id, fetcher), rows in groups.items():
        lo = min(r.at for r in rows) - CROWD_WINDOW
        hi = max(r.at for r in rows) + CROWD_WINDOW
        earlier = set(session.scalars(select(Event.send_id).where(
            Event.campaign_id == campaign_id, Event.type == EventType.OPEN, Event.fetcher == fetcher,
            Event.occurred_at.between(lo, hi))))
        if len(earlier | {r.send[0] for r in rows}) < CROWD_SIZE:
            continue
        for r in rows:
            r.reason = "prefetch by one fetcher for many recipients"
        # The first few of the crowd were recorded as human before the crowd showed; correct them.
        earlier_human = (Event.campaign_id == campaign_id, Event.type == EventType.OPEN, Event.fetcher == fetcher,
                         Event.occurred_at.between(lo, hi), Event.machine.is_(False))
        affected.update(c for c in session.scalars(select(Event.contact_id).where(*earlier_human).distinct())
                        if c is not None)
        session.execute(update(Event).where(*earlier_human).values(machine=True))
    return affected


def _flag_link_sweeps(session: Session, clicks: list[_Row], links: dict[int, tuple[int, str]]) -> set[int]:
    """Several links of one message clicked within two seconds (all of them, or three or more) is a scanner.

    Returns the contacts whose already recorded human clicks (and the opens they implied) became machine events.
    """
    by_send: dict[int, list[_Row]] = defaultdict(list)
    for r in clicks:
        by_send[r.send[0]].append(r)
    if not by_send:
        return set()
    earlier: dict[int, list[tuple[dt.datetime, int]]] = defaultdict(list)
    lo = min(r.at for r in clicks) - SCANNER_CLICK_WINDOW
    for send_id, at, data in session.execute(select(Event.send_id, Event.occurred_at, Event.data).where(
            Event.send_id.in_(by_send), Event.type == EventType.CLICK, Event.occurred_at >= lo)):
        earlier[send_id].append((at, int((data or {}).get("link_id", 0))))
    link_counts: dict[int, int] = {}
    swept: list[int] = []
    for send_id, rows in by_send.items():
        campaign_id = rows[0].send[1]
        if campaign_id not in link_counts:   # an A/B variant's message has its own links
            link_counts[campaign_id] = campaign_service.links_per_message(session, campaign_id)
        needed = max(2, min(3, link_counts[campaign_id].get(rows[0].hit.link_id, 0)))
        seen = earlier[send_id] + [(r.at, r.hit.link_id) for r in rows]
        for r in rows:
            near = {link for at, link in seen if abs((at - r.at).total_seconds()) <= SCANNER_CLICK_WINDOW.seconds}
            if len(near) >= needed:
                r.reason = r.reason or "all links clicked at once"
        if any(r.reason == "all links clicked at once" for r in rows) and earlier[send_id]:
            swept.append(send_id)
    if not swept:
        return set()
    # Clicks written by an earlier batch were part of the sweep too, and so were the opens they implied.
    earlier_clicks = (Event.send_id.in_(swept), Event.type == EventType.CLICK, Event.occurred_at >= lo,
                      Event.machine.is_(False))
    implied_opens = (Event.send_id.in_(swept), Event.type == EventType.OPEN, Event.occurred_at >= lo,
                     Event.machine.is_(False), Event.dedupe_key.like("%:open"))
    affected = {c for c in session.scalars(select(Event.contact_id).where(*earlier_clicks).distinct())
                if c is not None}
    session.execute(update(Event).where(*earlier_clicks).values(machine=True))
    session.execute(update(Event).where(*implied_opens).values(machine=True))
    return affected


def _implied_opens(session: Session, clicks: list[_Row], opens: list[_Row]) -> list[dict]:
    """A human click counts as an open when no human open of that message was recorded."""
    human_clicks = {}
    for r in clicks:
        if not r.reason:
            human_clicks.setdefault(r.send[0], r)
    if not human_clicks:
        return []
    opened = {r.send[0] for r in opens if not r.reason}
    opened |= set(session.scalars(select(Event.send_id).where(
        Event.send_id.in_(human_clicks), Event.type == EventType.OPEN, Event.machine.is_(False))))
    out = []
    for send_id, r in human_clicks.items():
        if send_id not in opened:
            ev = _event(r, EventType.OPEN)
            ev["data"] = {"implied_by": "click", "ua": r.hit.user_agent[:300]}
            ev["dedupe_key"] = f"{r.hit.key[:58]}:open"   # the column holds 64
            out.append(ev)
    return out


def _update_contacts(session: Session, events: list[dict]) -> None:
    human = [e for e in events if not e["machine"]]
    if not human:
        return
    contacts = {c.id: c for c in session.scalars(
        select(Contact).where(Contact.id.in_({e["contact_id"] for e in human})))}
    for e in sorted(human, key=lambda e: e["occurred_at"]):
        c = contacts.get(e["contact_id"])
        if c is None:
            continue
        at = e["occurred_at"]
        if e["type"] == EventType.OPEN:
            c.last_opened_at = max(c.last_opened_at or at, at)
        else:
            c.last_clicked_at = max(c.last_clicked_at or at, at)
        add_to_score(c, WEIGHTS[e["type"]], at)


def recompute_engagement(session: Session, contact_ids: set[int] | Sequence[int], *, page: int = 500) -> int:
    """Rebuild last_opened_at, last_clicked_at and the score of these contacts from their human events alone.

    Used when events already folded in are reclassified as machine events: an incremental score cannot subtract
    them exactly (it decayed since), so it is recomputed, a page of contacts per query and per bulk update.
    The score is stored exact as of the contact's latest human event. Does not commit.
    """
    ids = sorted(set(contact_ids))
    for start in range(0, len(ids), page):
        chunk = ids[start:start + page]
        state: dict[int, dict] = {cid: {"id": cid, "last_opened_at": None, "last_clicked_at": None,
                                        "engagement_score": 0.0, "engagement_at": None} for cid in chunk}
        timeline: dict[int, list[tuple[dt.datetime, float]]] = defaultdict(list)
        for cid, type_, at in session.execute(select(Event.contact_id, Event.type, Event.occurred_at).where(
                Event.contact_id.in_(chunk), Event.machine.is_(False),
                Event.type.in_([str(t) for t in WEIGHTS]))):
            row = state[cid]
            if type_ in (EventType.OPEN, EventType.CLICK):
                column = "last_opened_at" if type_ == EventType.OPEN else "last_clicked_at"
                row[column] = max(row[column] or at, at)
            timeline[cid].append((at, WEIGHTS[EventType(type_)]))
        for cid, moments in timeline.items():
            ref = max(at for at, _w in moments)
            state[cid]["engagement_at"] = ref
            state[cid]["engagement_score"] = round(sum(w * 0.5 ** ((ref - at) / HALF_LIFE) for at, w in moments), 6)
        session.execute(update(Contact), list(state.values()))
    # Contacts loaded in this session must not keep the values from before.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Contact) and obj.id in contact_ids:
            session.expire(obj)
    logger.info("recomputed engagement of %d contacts after reclassifying machine events", len(ids))
    return len(ids)


# ---------------------------------------------------------------- segments


def had_event(type_: EventType | str, since: dt.datetime, *, human_only: bool = True,
              campaign_id: int | None = None) -> ColumnElement[bool]:
    """WHERE clause on Contact: had an event of this type since `since` ('clicked in the last 30 days')."""
    conds = [Event.contact_id == Contact.id, Event.type == str(type_), Event.occurred_at >= since]
    if human_only:
        conds.append(Event.machine.is_(False))
    if campaign_id is not None:
        conds.append(Event.campaign_id == campaign_id)
    return exists().where(and_(*conds))


def no_event_since(type_: EventType | str, since: dt.datetime, *, human_only: bool = True) -> ColumnElement[bool]:
    """WHERE clause on Contact: no event of this type since `since` ('no human open in 90 days')."""
    return ~had_event(type_, since, human_only=human_only)
