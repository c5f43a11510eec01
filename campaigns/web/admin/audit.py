"""Admin: the audit log — `audit()` records the current admin's action; the page lists entries with filters."""

from __future__ import annotations

import datetime as dt

from flask import render_template, request
from flask_login import current_user

from campaigns.accounts import audit as audit_service
from campaigns.accounts.audit import Action
from campaigns.db import parse_id
from campaigns.web.admin.blueprint import admin_required, bp
from campaigns.web.context import db


def audit(action: Action, target: str = "", detail: str = "") -> None:
    """Record what the logged-in admin just did and commit it; call once the change itself succeeded."""
    session = db()
    audit_service.record(session, current_user.email, action, target, detail, request.remote_addr or "")
    session.commit()


def _date(raw: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(raw.strip()[:10]) if raw.strip() else None
    except ValueError:
        return None


@bp.get("/audit")
@admin_required
def audit_log():
    args = request.args
    before = args.get("before", "")
    action = args.get("action", "")
    filters = audit_service.Filters(
        actor=args.get("actor", "")[:320], action=action if action in set(Action) else "",
        since=_date(args.get("since", "")), until=_date(args.get("until", "")),
        before_id=parse_id(before, big=True))
    rows = audit_service.entries(db(), filters, limit=audit_service.PAGE + 1)
    more = len(rows) > audit_service.PAGE
    rows = rows[:audit_service.PAGE]
    older = {k: v for k, v in args.items() if k != "before"} | {"before": rows[-1].id} if more else None
    return render_template("admin/audit.html", rows=rows, filters=filters, actions=list(Action),
                           actors=audit_service.actors(db()), older=older)
