"""Admin pages: the contact policy (settings page, campaign forecast panel, contact outlook, release of held sends)."""

from __future__ import annotations

import logging

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from campaigns.composing import editor as campaign_service
from campaigns.config import PolicySettings
from campaigns.errors import ValidationError
from campaigns.models import AdminRole, Campaign, CampaignStatus, Contact, PolicyConfig
from campaigns.sending import holds as hold_service
from campaigns.sending import outlook as outlook_service
from campaigns.sending import policy as policy_service
from campaigns.sending import release
from campaigns.web.admin.audit import Action, audit
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.context import db, rt

logger = logging.getLogger(__name__)

REASON_LABELS = {
    "paused": "paused by the contact",
    "preference": "the contact's chosen frequency",
    "ratio": "not enough nurture mail yet for another promotion",
    "weekly-marketing": "weekly marketing limit",
    "daily-total": "daily limit",
    "suppressed": "bounced or complained",
    "unsubscribed": "unsubscribed",
    "topic": "left the campaign's topic",
    "deleted": "contact deleted",
    "expired": "expired (validity ended)",
    "digest": "sent in the contact's weekly or monthly digest",
    "other": "other",
    "ready": "no longer held: goes at the next re-check",
}


@bp.app_template_filter("policy_reason")
def policy_reason(code: str) -> str:
    """A reason code in words."""
    return REASON_LABELS.get(code, code.replace("-", " ").replace("_", " "))


def current_policy() -> PolicySettings:
    """The contact policy in force: the Settings page's values over the configured defaults."""
    return policy_service.load(db(), rt().settings.policy)


@bp.app_template_global("policy_panel")
def policy_panel(campaign: Campaign) -> dict:
    """What the campaign page shows: the forecast before sending; after, held sends by the rule that holds them
    *now* (recomputed, with when they can go) and skipped sends by reason."""
    session = db()
    policy = current_policy()
    out: dict = {"policy": policy, "deadline": policy_service.deadline(campaign, policy),
                 "reasons": outlook_service.send_reasons(session, campaign.id), "forecast": None, "holds": []}
    if out["reasons"]["held"]:
        out["holds"] = hold_service.campaign_holds(session, campaign, policy)
    if campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED) or request.args.get("forecast") == "1":
        # Computed with the audience count (admin.campaigns._audience): live on a small list, else by a job.
        audience = g.get("audience")
        if audience is not None and audience.value is None:
            out["forecast_pending"] = True
        elif audience is not None and audience.value["forecast"] is not None:
            f = audience.value["forecast"]
            out["forecast"] = outlook_service.Forecast(f["audience"], f["send"], f["held"])
            out["forecast_age"] = audience.age()
        elif audience is None:
            out["forecast"] = outlook_service.forecast(session, campaign, policy)
    return out


@bp.app_template_global("policy_outlook")
def policy_outlook(contact: Contact) -> outlook_service.Outlook:
    """What the contact page shows: recent mail by kind, what the policy allows next, and each held send with the
    rule that holds it now and when it can go."""
    policy = current_policy()
    found = outlook_service.outlook(db(), contact, policy)
    if found.held:
        found.held = hold_service.contact_holds(db(), contact, policy)
    return found


@bp.route("/settings/policy", methods=["GET", "POST"])
@login_required
def policy_settings():
    """View and (administrators) edit the ratio cap and frequency caps."""
    session = db()
    if request.method == "POST":
        if current_user.role != AdminRole.ADMIN:
            abort(403)
        try:
            policy_service.save(session, request.form, updated_by=current_user.email)
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            return render_template("admin/policy/settings.html", policy=current_policy(), form=request.form,
                                   limits=policy_service.LIMITS, error_field=exc.field), 400
        audit(Action.POLICY, "sending policy", ", ".join(f"{k}={v}" for k, v in sorted(request.form.items())
                                                         if k != "csrf_token")[:1000])
        flash("Policy saved. It applies to every message sent from now on.", "info")
        return redirect(url_for("admin.policy_settings"))
    return render_template("admin/policy/settings.html", policy=current_policy(), form=None,
                           limits=policy_service.LIMITS,
                           error_field="", saved=session.get(PolicyConfig, 1))


@bp.post("/campaigns/<int:campaign_id>/release-held")
@editor_required
def campaign_release_held(campaign_id: int):
    """Re-check held sends now (the scheduler also does this periodically)."""
    campaign = campaign_service.get_campaign(db(), campaign_id)
    db().commit()
    released = release.release_held(rt())
    if campaign.status != CampaignStatus.RUNNING:
        flash("Held sends are only retried while the campaign is running.", "error")
    else:
        flash(f"{released} held send(s) re-queued." if released else
              "No held contact is eligible yet; they are checked again automatically.", "info")
    return redirect(url_for("admin.campaign", campaign_id=campaign_id))
