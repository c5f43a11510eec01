"""Who gets a letter: the campaign's audience with a complete postal address and no "no post" choice, through the
contact policy like mail, and the record of each letter (send row, policy ledger, `letter` event, PostLetter).

Post is a touch like mail, so it goes through the same policy check: every eligible contact gets a send row of the
campaign, `campaigns.sending.policy.decide` writes the ledger row of those who pass (the rolling-window caps count
letters too) and names the rule for the rest, whose send rows are skipped with that reason. Nothing here commits:
the print run (campaigns.post.runs) owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import exists, func, insert, not_, select, update
from sqlalchemy.orm import Session

from campaigns.config import PolicySettings
from campaigns.models import (
    Campaign,
    Contact,
    Event,
    EventType,
    PostLetter,
    PostOptOut,
    PostRun,
    Send,
    SendStatus,
)
from campaigns.post.addresses import complete_address, wants_post
from campaigns.sending import policy as policy_service
from campaigns.sending import sendrows
from campaigns.sending.lifecycle import audience_conditions

CHUNK = 500


@dataclass(frozen=True)
class Eligibility:
    """A campaign's audience as post sees it now (before the contact policy)."""

    audience: int
    no_address: int
    no_post: int
    already: int          # already got this campaign (by mail or an earlier letter)
    eligible: int


def _not_sent(campaign: Campaign):
    return not_(exists().where(Send.campaign_id == campaign.id, Send.contact_id == Contact.id))


def eligible_conditions(campaign: Campaign) -> list:
    """WHERE clauses (on Contact) of who may get the campaign as a letter now."""
    return [*audience_conditions(campaign), complete_address(), wants_post(), _not_sent(campaign)]


def eligibility(session: Session, campaign: Campaign) -> Eligibility:
    """How many of the audience get a letter, and why the others do not (one pass over the audience)."""
    def total(*conds) -> int:
        return session.scalar(select(func.count()).select_from(Contact).where(*audience_conditions(campaign),
                                                                                *conds)) or 0

    return Eligibility(audience=total(), no_address=total(not_(complete_address())),
                       no_post=total(exists().where(PostOptOut.contact_id == Contact.id)),
                       already=total(not_(_not_sent(campaign))),
                       eligible=total(complete_address(), wants_post(), _not_sent(campaign)))


@dataclass
class Chosen:
    """The outcome of choosing: contact ids who get a letter (with their send ids) and how many were held."""

    send_of: dict[int, int]
    held: int


def choose(session: Session, campaign: Campaign, policy: PolicySettings, now: dt.datetime) -> Chosen:
    """Create the campaign's send rows for every eligible contact and let the contact policy decide, in chunks;
    held contacts' rows are skipped with the rule's reason. Flushes; the caller commits."""
    sendrows.for_new_rows(session)    # before the contacts are read: a concurrent erase waits for this transaction
    ids = list(session.scalars(select(Contact.id).where(*eligible_conditions(campaign)).order_by(Contact.id)))
    passed: dict[int, int] = {}
    held_total = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        session.execute(insert(Send), [{"campaign_id": campaign.id, "contact_id": cid, "status": SendStatus.SENT,
                                        "attempts": 1, "sent_at": now, "created_at": now} for cid in chunk])
        send_of = dict(session.execute(select(Send.contact_id, Send.id).where(
            Send.campaign_id == campaign.id, Send.contact_id.in_(chunk))).all())
        contacts = {c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_(chunk)))}
        held = policy_service.decide(session, campaign.kind, policy, send_of, contacts, now)
        for cid, reason in held.items():
            session.execute(update(Send).where(Send.id == send_of[cid]).values(
                status=SendStatus.SKIPPED, reason=reason, sent_at=None,
                last_error="not printed: " + policy_service.explain(reason, contacts[cid], policy)))
        held_total += len(held)
        passed.update({cid: sid for cid, sid in send_of.items() if cid not in held})
    session.flush()
    return Chosen(passed, held_total)


def record_letters(session: Session, run: PostRun, campaign: Campaign, chosen: Chosen, codes: dict[int, str],
                   now: dt.datetime) -> int:
    """Number the pages (sorted by country and postal code, as mailing houses want them) and record each letter:
    a PostLetter row, a `letter` event on the contact's timeline, their last-mailed time. Flushes only."""
    ids = list(chosen.send_of)
    rows = []
    for start in range(0, len(ids), CHUNK):
        rows += session.execute(select(Contact.id, Contact.country, Contact.postal_code)
                                .where(Contact.id.in_(ids[start:start + CHUNK]))).all()
    rows.sort(key=lambda r: ((r.country or "").upper(), r.postal_code or "", r.id))
    order = [r.id for r in rows]
    letters = [{"run_id": run.id, "contact_id": cid, "send_id": chosen.send_of[cid], "page": page,
                "coupon_code": codes.get(cid, ""), "sent_at": now} for page, cid in enumerate(order, start=1)]
    events = [{"contact_id": cid, "campaign_id": campaign.id, "send_id": chosen.send_of[cid],
               "type": EventType.LETTER.value, "occurred_at": now,
               "data": {"run_id": run.id, "layout": str(run.layout), "page": page}}
              for page, cid in enumerate(order, start=1)]
    for start in range(0, len(letters), CHUNK):
        session.execute(insert(PostLetter), letters[start:start + CHUNK])
        session.execute(insert(Event), events[start:start + CHUNK])
        session.execute(update(Contact).where(Contact.id.in_(order[start:start + CHUNK]))
                        .values(last_sent_at=now).execution_options(synchronize_session=False))
    session.flush()
    return len(letters)
