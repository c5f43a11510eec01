"""Admin: transactional messages — every message sent through POST /api/v1/tx, newest first, filtered by template,
status, recipient or message id, in keyset pages, with the relay's reply and the message's opens and clicks.
Read-only for everyone who may log in (viewers too): a message is changed only by its delivery."""

from __future__ import annotations

from dataclasses import dataclass

from flask import render_template, request
from flask_login import login_required
from sqlalchemy import select

from campaigns.db import parse_id
from campaigns.models import Campaign, CampaignKind, TxMessage, TxStatus
from campaigns.transactional import tracking
from campaigns.web.admin.blueprint import bp
from campaigns.web.context import db

PAGE = 50


@dataclass(frozen=True)
class Filters:
    template: int | None = None
    status: str = ""
    recipient: str = ""
    message: str = ""
    before: int | None = None

    def args(self) -> dict[str, str]:
        """The filters as query arguments (what a page link keeps)."""
        out = {"template": str(self.template or ""), "status": self.status, "recipient": self.recipient,
               "message": self.message}
        return {k: v for k, v in out.items() if v}


def _filters() -> Filters:
    args = request.args
    status = args.get("status", "")
    return Filters(template=parse_id(args.get("template", "")), status=status if status in set(TxStatus) else "",
                   recipient=args.get("recipient", "").strip()[:320], message=args.get("message", "").strip()[:40],
                   before=parse_id(args.get("before", ""), big=True))


@bp.get("/transactional")
@login_required
def tx_messages():
    """The transactional messages matching the filters, PAGE at a time (older pages by `before`, an id)."""
    session = db()
    f = _filters()
    stmt = select(TxMessage).order_by(TxMessage.id.desc()).limit(PAGE + 1)
    if f.template:
        stmt = stmt.where(TxMessage.campaign_id == f.template)
    if f.status:
        stmt = stmt.where(TxMessage.status == f.status)
    if f.recipient:
        wanted = f.recipient.lower()    # a whole address matches exactly, a part from the start
        stmt = stmt.where(TxMessage.email == wanted) if "@" in wanted else \
            stmt.where(TxMessage.email.startswith(wanted, autoescape=True))
    if f.message:
        stmt = stmt.where(TxMessage.public_id == f.message)
    if f.before:
        stmt = stmt.where(TxMessage.id < f.before)
    rows = list(session.scalars(stmt))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    names = dict(session.execute(select(Campaign.id, Campaign.name).where(
        Campaign.id.in_({m.campaign_id for m in rows if m.campaign_id}))).all())
    templates = session.execute(select(Campaign.id, Campaign.name).where(
        Campaign.kind == CampaignKind.TRANSACTIONAL).order_by(Campaign.name)).all()
    return render_template("admin/transactional.html", rows=rows, names=names, filters=f, templates=templates,
                           statuses=list(TxStatus), seen=tracking.engagement(session, [m.id for m in rows]),
                           older=f.args() | {"before": str(rows[-1].id)} if more else None)
