"""Opens and clicks of transactional messages, recorded per message.

A transactional message has no send row (a contact gets the same template any number of times), so its open pixel
and links carry tokens of their own (mailer.tracking.Purpose.TX_OPEN, TX_CLICK: the tx_message id, sealed like
every recipient token) and its hits travel through the same Redis queue and drain as campaign hits
(campaigns.feedback.hits) with `tx_id` set. They become events with `tx_message_id` (no send_id) and the template's
campaign_id, so the contact's timeline, the engagement score, segments and the outgoing webhooks see them as any
open or click, and the message's counts are one indexed query (campaigns.transactional.tracking).

Machines are told apart as for campaign mail: by agent and network (campaigns.feedback.machines), HEAD requests,
and several links of one message clicked within two seconds (a scanner's sweep). The crowd rule (one fetcher
opening for many recipients right after a campaign's delivery) does not apply: receipts go out one at a time.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.composing import editor as campaign_service
from campaigns.feedback.hits import Hit, HitKind, HitSource
from campaigns.feedback.machines import fetcher_of, machine_agent
from campaigns.models import Event, EventType, Link, TxMessage

SWEEP_WINDOW = dt.timedelta(seconds=2)
SWEPT = "all links clicked at once"


def moment(at: float) -> dt.datetime:
    """A hit's unix time as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(at, dt.UTC)


def events(session: Session, hits: Sequence[Hit]) -> tuple[list[dict], set[int]]:
    """The event rows of these (deduplicated) transactional hits, implied opens included, and the contacts whose
    earlier human clicks turned out to be a scanner's sweep (their engagement must be recomputed). Hits of an
    unknown message, or of a link not in its template, are dropped. Writes only those reclassifications."""
    if not hits:
        return [], set()
    messages = {r.id: r for r in session.execute(
        select(TxMessage.id, TxMessage.public_id, TxMessage.campaign_id, TxMessage.contact_id)
        .where(TxMessage.id.in_({h.tx_id for h in hits})))}
    links = {r.id: r for r in session.execute(
        select(Link.id, Link.campaign_id, Link.url).where(Link.id.in_({h.link_id for h in hits if h.link_id})))}
    rows: list[dict] = []
    for h in hits:
        message = messages.get(h.tx_id)
        if message is None or message.contact_id is None:
            continue
        reason = machine_agent(h.user_agent, h.ip)
        data: dict = {"ua": h.user_agent[:300], "message_id": message.public_id}
        if h.kind == HitKind.CLICK:
            link = links.get(h.link_id)
            if link is None or link.campaign_id != message.campaign_id:
                continue
            reason = reason or ("HEAD request" if h.head else "")
            data.update(link_id=h.link_id, url=link.url[:500])
        if h.source != HitSource.WEB:
            data["source"] = h.source
        rows.append({"contact_id": message.contact_id, "campaign_id": message.campaign_id, "send_id": None,
                     "tx_message_id": message.id, "type": EventType.CLICK if h.kind == HitKind.CLICK
                     else EventType.OPEN, "occurred_at": moment(h.at), "data": data, "machine": False,
                     "fetcher": fetcher_of(h.user_agent, h.ip), "dedupe_key": h.key, "_reason": reason})
    swept = _flag_sweeps(session, [r for r in rows if r["type"] == EventType.CLICK])
    for r in rows:
        reason = r.pop("_reason")
        if reason:
            r["machine"], r["data"]["machine"] = True, reason
    return rows + _implied_opens(session, rows), swept


def _flag_sweeps(session: Session, clicks: list[dict]) -> set[int]:
    """Several links of one message clicked within SWEEP_WINDOW (all of them, or three or more) is a scanner:
    those clicks become machine clicks, earlier ones of the sweep too (and the opens they implied)."""
    if not clicks:
        return set()
    by_message: dict[int, list[dict]] = defaultdict(list)
    for r in clicks:
        by_message[r["tx_message_id"]].append(r)
    lo = min(r["occurred_at"] for r in clicks) - SWEEP_WINDOW
    earlier: dict[int, list[tuple[dt.datetime, int]]] = defaultdict(list)
    for tx_id, at, data in session.execute(select(Event.tx_message_id, Event.occurred_at, Event.data).where(
            Event.tx_message_id.in_(by_message), Event.type == EventType.CLICK, Event.occurred_at >= lo)):
        earlier[tx_id].append((at, int((data or {}).get("link_id", 0))))
    counts: dict[int, dict[int, int]] = {}
    swept: list[int] = []
    for tx_id, rows in by_message.items():
        campaign_id = rows[0]["campaign_id"]
        if campaign_id not in counts:
            counts[campaign_id] = campaign_service.links_per_message(session, campaign_id)
        needed = max(2, min(3, counts[campaign_id].get(rows[0]["data"]["link_id"], 0)))
        seen = earlier[tx_id] + [(r["occurred_at"], r["data"]["link_id"]) for r in rows]
        for r in rows:
            near = {link for at, link in seen if abs((at - r["occurred_at"]).total_seconds()) <= SWEEP_WINDOW.seconds}
            if len(near) >= needed:
                r["_reason"] = r["_reason"] or SWEPT
        if earlier[tx_id] and any(r["_reason"] == SWEPT for r in rows):
            swept.append(tx_id)
    if not swept:
        return set()
    earlier_clicks = (Event.tx_message_id.in_(swept), Event.type == EventType.CLICK, Event.occurred_at >= lo,
                      Event.machine.is_(False))
    implied = (Event.tx_message_id.in_(swept), Event.type == EventType.OPEN, Event.occurred_at >= lo,
               Event.machine.is_(False), Event.dedupe_key.like("%:open"))
    affected = {c for c in session.scalars(select(Event.contact_id).where(*earlier_clicks).distinct()) if c}
    session.execute(update(Event).where(*earlier_clicks).values(machine=True))
    session.execute(update(Event).where(*implied).values(machine=True))
    return affected


def _implied_opens(session: Session, rows: list[dict]) -> list[dict]:
    """A human click counts as an open of its message when no human open of it was recorded."""
    clicked: dict[int, dict] = {}
    for r in rows:
        if r["type"] == EventType.CLICK and not r["machine"]:
            clicked.setdefault(r["tx_message_id"], r)
    if not clicked:
        return []
    opened = {r["tx_message_id"] for r in rows if r["type"] == EventType.OPEN and not r["machine"]}
    opened |= set(session.scalars(select(Event.tx_message_id).where(
        Event.tx_message_id.in_(clicked), Event.type == EventType.OPEN, Event.machine.is_(False))))
    return [{**r, "type": EventType.OPEN, "data": {"implied_by": "click", "ua": r["data"]["ua"],
                                                   "message_id": r["data"]["message_id"]},
             "dedupe_key": f"{r['dedupe_key'][:58]}:open"}
            for tx_id, r in clicked.items() if tx_id not in opened]
