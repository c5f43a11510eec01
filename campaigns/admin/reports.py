"""Campaign report page: delivery, human vs machine engagement, clicks per link, unsubscribes, bounces, complaints."""

from __future__ import annotations

from flask import abort, render_template
from flask_login import login_required

from campaigns.admin import bp
from campaigns.app import db
from campaigns.errors import NotFound
from campaigns.services.reports import campaign_report


@bp.get("/campaigns/<int:campaign_id>/report")
@login_required
def campaign_report_page(campaign_id: int):  # noqa: ANN201
    """The recipient report of one campaign."""
    try:
        report = campaign_report(db(), campaign_id)
    except NotFound:
        abort(404)
    return render_template("admin/report.html", report=report)
