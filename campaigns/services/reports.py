"""Per-campaign recipient report: delivery, human and machine engagement, unsubscribes, bounces, complaints."""

from __future__ import annotations

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from campaigns.models import Event, EventType, Link, Send, SendStatus
from campaigns.services.campaigns import get_campaign


def _count(session: Session, *conds) -> int:  # noqa: ANN002
    return session.scalar(select(func.count(distinct(Event.send_id))).where(*conds)) or 0


def campaign_report(session: Session, campaign_id: int) -> dict:
    """Numbers for one campaign; engagement counts unique recipients and never includes machine opens or clicks.

    Keys: recipients, delivered (accepted by the relay, minus bounces), opens_human, opens_machine,
    open_rate (human opens / delivered), clicks_human (unique recipients), clicks_machine, click_rate,
    links (per link: url, unique human clicks, total human clicks, machine clicks), unsubscribes,
    bounces_hard, bounces_soft, complaints.
    """
    campaign = get_campaign(session, campaign_id)
    sent = session.scalar(select(func.count()).select_from(Send).where(
        Send.campaign_id == campaign_id, Send.status == SendStatus.SENT)) or 0
    of = Event.campaign_id == campaign_id

    def contacts_with(type_: EventType, **data_kind: str) -> int:
        if not data_kind:
            return session.scalar(select(func.count(distinct(Event.contact_id))).where(of, Event.type == type_)) or 0
        rows = session.scalars(select(Event.data).where(of, Event.type == type_))
        return sum(1 for d in rows if all((d or {}).get(k) == v for k, v in data_kind.items()))

    bounced_sends = session.scalar(select(func.count(distinct(Event.send_id))).where(
        of, Event.type == EventType.BOUNCE, Event.send_id.is_not(None))) or 0
    delivered = max(sent - bounced_sends, 0)
    opens_human = _count(session, of, Event.type == EventType.OPEN, Event.machine.is_(False))
    opens_any = _count(session, of, Event.type == EventType.OPEN)
    clicks_human = _count(session, of, Event.type == EventType.CLICK, Event.machine.is_(False))
    clicks_machine = session.scalar(select(func.count()).where(
        of, Event.type == EventType.CLICK, Event.machine.is_(True))) or 0
    per_link: dict[int, dict] = {link.id: {"link_id": link.id, "url": link.url, "position": link.position,
                                           "unique_clicks": 0, "clicks": 0, "machine_clicks": 0}
                                 for link in session.scalars(select(Link).where(Link.campaign_id == campaign_id)
                                                             .order_by(Link.position))}
    uniq: dict[int, set[int]] = {}
    for send_id, data, machine in session.execute(select(Event.send_id, Event.data, Event.machine).where(
            of, Event.type == EventType.CLICK)):
        link = per_link.get(int((data or {}).get("link_id", 0)))
        if link is None:
            continue
        if machine:
            link["machine_clicks"] += 1
        else:
            link["clicks"] += 1
            uniq.setdefault(link["link_id"], set()).add(send_id)
    for link_id, sends in uniq.items():
        per_link[link_id]["unique_clicks"] = len(sends)
    return {
        "campaign_id": campaign.id,
        "name": campaign.name,
        "recipients": campaign.recipients,
        "sent": sent,
        "delivered": delivered,
        "opens_human": opens_human,
        # Sends opened only by machines: proxies and scanners, shown apart and never as engagement.
        "opens_machine": opens_any - opens_human,
        "open_rate": round(opens_human / delivered, 4) if delivered else 0.0,
        "clicks_human": clicks_human,
        "clicks_machine": clicks_machine,
        "click_rate": round(clicks_human / delivered, 4) if delivered else 0.0,
        "links": list(per_link.values()),
        "unsubscribes": contacts_with(EventType.UNSUBSCRIBE),
        "bounces_hard": contacts_with(EventType.BOUNCE, kind="hard"),
        "bounces_soft": contacts_with(EventType.BOUNCE, kind="soft"),
        "complaints": contacts_with(EventType.COMPLAINT),
    }
