"""Admin: Settings → API keys (admins only) — create a key (its secret is shown once, on the answer to the
form, never stored or flashed), list keys with prefix, scopes and last use, revoke. Both are audit-logged."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from campaigns.accounts import api_keys
from campaigns.errors import RapportError, ValidationError
from campaigns.models import ApiScope
from campaigns.web.admin.audit import Action, audit
from campaigns.web.admin.blueprint import admin_required, bp
from campaigns.web.context import db

SCOPE_HINTS = {
    ApiScope.CONTACTS_READ: "read contacts, topics, subscriptions, events, orders and survey answers",
    ApiScope.CONTACTS_WRITE: "create, update and erase contacts; set subscriptions",
    ApiScope.SEGMENTS_READ: "list segments, count and list their members",
    ApiScope.CAMPAIGNS_READ: "read campaigns, their stats and events",
    ApiScope.CAMPAIGNS_WRITE: "create drafts; schedule, pause and cancel campaigns",
    ApiScope.ORDERS_WRITE: "record orders from the shop",
    ApiScope.COUPONS_ISSUE: "give a contact a coupon code",
    ApiScope.COUPONS_REDEEM: "look up and redeem coupon codes at checkout",
    ApiScope.WEBHOOKS_REPLAY: "read outgoing webhook endpoints and their delivery logs; replay deliveries",
    ApiScope.SEND_TRANSACTIONAL: "send transactional messages (receipts, notices) and read their status",
}


def _page(form: dict | None = None, secret: str = "", error_field: str | None = None, status: int = 200):
    return render_template("admin/settings/api_keys.html", keys=api_keys.list_keys(db()), scopes=SCOPE_HINTS,
                           form=form or {"rate_limit": str(api_keys.DEFAULT_RATE_LIMIT)}, secret=secret,
                           error_field=error_field, default_limit=api_keys.DEFAULT_RATE_LIMIT), status


@bp.route("/settings/api-keys", methods=["GET", "POST"])
@admin_required
def settings_api_keys():
    if request.method == "GET":
        return _page()
    session = db()
    form = request.form
    try:
        new = api_keys.create_key(session, form.get("name", "")[:300], form.getlist("scopes"),
                                  rate_limit=form.get("rate_limit", "")[:12], created_by=current_user.email)
        session.commit()
    except ValidationError as exc:
        session.rollback()
        flash(str(exc), "error")
        return _page({"name": form.get("name", "")[:200], "rate_limit": form.get("rate_limit", "")[:12],
                      "scopes": form.getlist("scopes")}, error_field=exc.field, status=400)
    audit(Action.API_KEY_CREATE, f"api key {new.key.id}",
          f"{new.key.name} ({new.key.prefix}): {', '.join(new.key.scopes)}")
    return _page(secret=new.secret)


@bp.post("/settings/api-keys/<int:key_id>/revoke")
@admin_required
def settings_api_key_revoke(key_id: int):
    session = db()
    try:
        key = api_keys.revoke_key(session, key_id)
        session.commit()
        audit(Action.API_KEY_REVOKE, f"api key {key.id}", f"{key.name} ({key.prefix})")
        flash(f"Key {key.name} revoked: requests with it are refused from now on.", "info")
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.settings_api_keys"))
