"""Admin: loyalty tiers (define, edit, delete) and the tier report (customers per tier, recent promotions and
demotions). Saving or deleting a tier recomputes everyone's tier in the background (Job.RECOMPUTE_TIERS)."""

from __future__ import annotations

import logging

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from campaigns import queueing
from campaigns.errors import ValidationError
from campaigns.models import AdminRole, LoyaltyTier
from campaigns.orders import tiers as loyalty
from campaigns.reports import summaries
from campaigns.web.admin.audit import Action, audit
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.context import db, rt
from campaigns.web.lookup import get_or_404

logger = logging.getLogger(__name__)
TIERS_MAX_AGE = 600     # seconds before a big list's contacts per tier are counted again


def _recompute() -> None:
    summaries.forget(rt(), "tiers")      # counted under the old tiers: never shown again (the job forgets it too)
    queueing.enqueue(rt().queue, queueing.Job.RECOMPUTE_TIERS, loyalty.REASON_EDITED,
                     description="recompute loyalty tiers after an edit")


def _page(form=None, editing: LoyaltyTier | None = None, status: int = 200):
    session = db()
    days = request.args.get("days", "30")
    days = int(days) if days.isdigit() and 1 <= int(days) <= 3650 else 30
    tiers = loyalty.list_tiers(session)
    sizes = summaries.get(rt(), session, "tiers", max_age=TIERS_MAX_AGE)   # a pass over every contact's tier
    return render_template("admin/loyalty.html", tiers=tiers, form=form, editing=editing, sizes=sizes,
                           report=loyalty.report(session, days=days, per=sizes.value, count=False),
                           describe={t.id: loyalty.TierRule(t.name, t.rank, t.min_value, t.min_orders,
                                                            t.period_days).describe() for t in tiers},
                           may_edit=current_user.role in (AdminRole.ADMIN, AdminRole.EDITOR)), status


@bp.get("/contacts/loyalty")
@login_required
def loyalty_tiers():
    """The tiers, a form for a new one, and the tier report."""
    edit = request.args.get("edit", "")
    editing = db().get(LoyaltyTier, int(edit)) if edit.isdigit() and len(edit) < 10 else None
    return _page(editing=editing)


@bp.post("/contacts/loyalty")
@bp.post("/contacts/loyalty/<int:tier_id>")
@editor_required
def loyalty_tier_save(tier_id: int | None = None):
    session = db()
    tier = get_or_404(session, LoyaltyTier, tier_id) if tier_id else None
    try:
        saved = loyalty.save_tier(session, request.form, tier)
        session.commit()
    except ValidationError as exc:
        session.rollback()
        flash(str(exc), "error")
        return _page(form=request.form, editing=session.get(LoyaltyTier, tier_id) if tier_id else None, status=400)
    audit(Action.TIER_SAVE, f"tier {saved.id}", f"{saved.name}: rank {saved.rank}, min value {saved.min_value}, "
          f"min orders {saved.min_orders}, period {saved.period_days} days")
    _recompute()
    flash(f"Tier {saved.name} saved. Every customer's tier is being recomputed.", "info")
    return redirect(url_for("admin.loyalty_tiers"))


@bp.post("/contacts/loyalty/<int:tier_id>/delete")
@editor_required
def loyalty_tier_delete(tier_id: int):
    session = db()
    tier = get_or_404(session, LoyaltyTier, tier_id)
    name = tier.name
    loyalty.delete_tier(session, tier)
    session.commit()
    audit(Action.TIER_DELETE, f"tier {tier_id}", name)
    _recompute()
    flash(f"Tier {name} deleted. Every customer's tier is being recomputed.", "info")
    return redirect(url_for("admin.loyalty_tiers"))
