"""Dashboard (recent campaigns, list growth, engagement trend) and the campaign report with its charts.

Charts are drawn by the vendored Chart.js (campaigns/static/vendor) from JSON endpoints: no inline script."""

from __future__ import annotations

import datetime as dt

from flask import Response, jsonify, render_template
from flask_login import login_required
from sqlalchemy import func, select

from campaigns.composing import editor as campaign_service
from campaigns.events import attendance as event_attendance
from campaigns.events import service as event_service
from campaigns.models import Campaign, utcnow
from campaigns.reports import summaries
from campaigns.web.admin.blueprint import bp
from campaigns.web.admin.policy import policy_reason
from campaigns.web.context import db, rt
from campaigns.web.lookup import get_or_404

DASHBOARD_MAX_AGE = 600                      # seconds before a big list's dashboard is counted again
REPORT_MAX_AGE = {True: 60, False: 900}      # recent campaign (sending, or finished in the last 2 days), older


@bp.get("/")
@login_required
def dashboard():
    """Recent campaigns, contact counts, and the charts (data from dashboard_data)."""
    session = db()
    # Most recent activity first, by the date the table shows: when it started, else when it was created.
    activity = func.coalesce(Campaign.started_at, Campaign.created_at)
    campaigns = list(session.scalars(select(Campaign).order_by(activity.desc(), Campaign.id.desc()).limit(10)))
    summary = summaries.get(rt(), session, "dashboard", max_age=DASHBOARD_MAX_AGE)
    counts = summary.value["counts"] if summary.value else {}
    return render_template("admin/dashboard.html", campaigns=campaigns, counts=counts, summary=summary,
                           total=sum(counts.values()),
                           base_url_warning=campaign_service.base_url_warning(rt().settings))


@bp.get("/dashboard.json")
@login_required
def dashboard_data() -> Response:
    """Weekly list growth and engagement for the dashboard charts ({"pending": true} while being counted)."""
    summary = summaries.get(rt(), db(), "dashboard", max_age=DASHBOARD_MAX_AGE)
    if summary.value is None:
        return jsonify(pending=True)
    return jsonify({**summary.value["charts"], "as_of": summary.age()})


def _report(campaign_id: int) -> summaries.Summary:
    """The campaign's report and chart data, computed once for both the page and its JSON."""
    campaign = get_or_404(db(), Campaign, campaign_id)
    # Figures of a campaign still sending or just sent move quickly; older ones change only with late hits.
    recent = campaign.finished_at is None or utcnow() - campaign.finished_at < dt.timedelta(days=2)
    return summaries.get(rt(), db(), "report", campaign_id, max_age=REPORT_MAX_AGE[recent])


@bp.get("/campaigns/<int:campaign_id>/report")
@login_required
def campaign_report_page(campaign_id: int):
    """The recipient report of one campaign."""
    summary = _report(campaign_id)
    campaign = db().get(Campaign, campaign_id)
    if summary.value is None:
        return render_template("admin/report_pending.html", campaign=campaign, summary=summary)
    event = event_service.for_campaign(db(), campaign_id)      # live: attendance is marked after the event
    return render_template("admin/report.html", report=summary.value["report"], charts=summary.value["charts"],
                           campaign=campaign, summary=summary, event=event,
                           figures=event_attendance.figures(db(), event) if event else None)


@bp.get("/campaigns/<int:campaign_id>/report.json")
@login_required
def campaign_report_data(campaign_id: int) -> Response:
    """Chart data of one campaign's report ({"pending": true} while being counted)."""
    summary = _report(campaign_id)
    if summary.value is None:
        return jsonify(pending=True)
    charts = summary.value["charts"]
    # The rules in words, as the campaign page names them (the codes are for the API and the metrics).
    rules = [{**rule, "label": policy_reason(rule["reason"])} for rule in charts.get("rules", [])]
    return jsonify({**charts, "rules": rules, "as_of": summary.age()})
