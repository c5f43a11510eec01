"""Dashboard (recent campaigns, list growth, engagement trend) and the campaign report with its charts.

Charts are drawn by the vendored Chart.js (campaigns/static/vendor) from JSON endpoints: no inline script."""

from __future__ import annotations

from flask import Response, abort, jsonify, render_template
from flask_login import login_required
from sqlalchemy import select

from campaigns.admin import bp
from campaigns.app import db
from campaigns.errors import NotFound
from campaigns.models import Campaign
from campaigns.services import contacts as contact_service
from campaigns.services import reports


@bp.get("/")
@login_required
def dashboard():  # noqa: ANN201
    """Recent campaigns, contact counts, and the charts (data from dashboard_data)."""
    session = db()
    campaigns = list(session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(10)))
    counts = contact_service.count_contacts(session)
    return render_template("admin/dashboard.html", campaigns=campaigns, counts=counts,
                           total=sum(counts.values()))


@bp.get("/dashboard.json")
@login_required
def dashboard_data() -> Response:
    """Weekly list growth and engagement for the dashboard charts."""
    return jsonify(reports.dashboard(db()))


@bp.get("/campaigns/<int:campaign_id>/report")
@login_required
def campaign_report_page(campaign_id: int):  # noqa: ANN201
    """The recipient report of one campaign."""
    try:
        report = reports.campaign_report(db(), campaign_id)
        charts = reports.campaign_charts(db(), campaign_id, report=report)
    except NotFound:
        abort(404)
    return render_template("admin/report.html", report=report, charts=charts,
                           campaign=db().get(Campaign, campaign_id))


@bp.get("/campaigns/<int:campaign_id>/report.json")
@login_required
def campaign_report_data(campaign_id: int) -> Response:
    """Chart data of one campaign's report."""
    try:
        return jsonify(reports.campaign_charts(db(), campaign_id))
    except NotFound:
        abort(404)
