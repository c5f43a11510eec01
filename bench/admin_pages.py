"""Which admin pages bench/admin_scale.py times: every GET rule under /admin of the Flask app's url_map, each filled
with ids of real rows of the data set, plus the hand-written variants (several campaign states, a search, POSTed
segment counts). A rule is timed, or on SKIP with the reason; tests/bench/test_admin_pages.py fails otherwise, so a
page added later is timed without anyone editing this list, or the test names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from werkzeug.routing import BuildError

# Rules not timed, by endpoint. Every entry says why; nothing else is left out.
SKIP: dict[str, str] = {
    # Not a page of a logged-in admin: the login form redirects a logged-in user.
    "admin.login": "the login form (redirects a logged-in user)",
    # File downloads: streamed files (a contact's data, a finished export, a print run's files, CSVs of a feature's
    # rows), not pages a marketer waits on; exports of big sets are background jobs (timed as export_seconds).
    "admin.contact_gdpr_export": "download: one contact's GDPR data file",
    "admin.contact_export": "old link: redirects to the export form (timed)",
    "admin.contact_export_download": "download of a finished export file",
    "admin.contact_import_errors": "download: an import's rejected-rows CSV",
    "admin.draw_export": "download: a draw's entries CSV",
    "admin.event_export": "download: an event's answers CSV",
    "admin.survey_export": "download: a survey's answers CSV",
    "admin.signup_form_export": "download: a sign-up form's consent records CSV",
    "admin.post_run_file": "download: a print run's PDF, labels or CSV",
}

# URL parameter name -> key of the ids mapping (the same name unless listed).
PARAM_KEYS: dict[str, str] = {"key": "outbox_key"}
# Per endpoint, when the parameter alone does not say which object (e.g. campaign_id of a campaign's A/B test page).
ENDPOINT_KEYS: dict[str, dict[str, str]] = {
    "admin.campaign": {"campaign_id": "finished_campaign"},
    "admin.campaign_abtest": {"campaign_id": "abtest_campaign"},
    "admin.campaign_abtest_preview": {"campaign_id": "abtest_campaign"},
    "admin.campaign_archive": {"campaign_id": "finished_campaign"},
    "admin.campaign_edit": {"campaign_id": "draft_campaign"},
    "admin.campaign_preview": {"campaign_id": "draft_campaign"},
    "admin.campaign_post": {"campaign_id": "post_campaign"},
    "admin.campaign_progress": {"campaign_id": "running_campaign"},
    "admin.campaign_report_page": {"campaign_id": "finished_campaign"},
    "admin.campaign_report_data": {"campaign_id": "finished_campaign"},
    "admin.outbox_web": {"token": "web_token"},
    "admin.campaign_preview_body": {"token": "preview_token"},
    "admin.coupon_api_status": {"code": "coupon_code"},
    "admin.contact_import_map": {"import_id": "upload_id"},      # an upload not started yet (the mapping form)
}
# Endpoints that want a bearer token (the shop's coupon API under /admin/api): endpoint -> key of the token in ids.
BEARER: dict[str, str] = {"admin.coupon_api_status": "coupon_api_token"}


def admin_get_rules(app) -> list:
    """Every url_map rule under /admin that answers GET, sorted by path."""
    return sorted((r for r in app.url_map.iter_rules() if r.rule.startswith("/admin") and "GET" in (r.methods or ())),
                  key=lambda r: (r.rule, r.endpoint))


def page_name(rule) -> str:
    return rule.endpoint.removeprefix("admin.") + (f" {rule.rule}" if rule.arguments else "")


def plan(app, ids: Mapping[str, Any], fixed: Sequence[tuple[str, str, str, Any]] = ()
         ) -> tuple[list[tuple[str, str, str, Any]], list[str]]:
    """The pages to time: the fixed ones (name, method, path, body: JSON for a POST, {"headers": …} for a GET),
    then one per GET rule (a rule, not an endpoint: /contacts/new and /contacts/<id> are two pages) that no fixed
    GET page already reaches, its parameters filled from ids. Returns (pages, unfilled): unfilled names each rule
    whose parameters ids cannot fill, with the missing names."""
    adapter = app.url_map.bind("bench.local")
    reached = {adapter.match(path.split("?", 1)[0], method="GET", return_rule=True)[0].rule
               for _, method, path, _ in fixed if method == "GET"}
    pages = list(fixed)
    unfilled = []
    for rule in admin_get_rules(app):
        if rule.endpoint in SKIP:
            continue
        if rule.rule in reached:
            continue
        keys = {arg: ENDPOINT_KEYS.get(rule.endpoint, {}).get(arg) or PARAM_KEYS.get(arg, arg)
                for arg in rule.arguments}
        if rule.endpoint in BEARER:
            keys["Authorization"] = BEARER[rule.endpoint]
        missing = sorted(key for key in keys.values() if ids.get(key) in (None, ""))
        if missing:
            unfilled.append(f"{rule.endpoint} {rule.rule}: no id for {', '.join(missing)}")
            continue
        values = {arg: ids[key] for arg, key in keys.items() if arg in rule.arguments}
        try:
            path = rule.build(values, append_unknown=False)[1]
        except (BuildError, ValueError, TypeError) as exc:
            unfilled.append(f"{rule.endpoint} {rule.rule}: {exc}")
            continue
        headers = {"Authorization": f"Bearer {ids[BEARER[rule.endpoint]]}"} if rule.endpoint in BEARER else None
        pages.append((page_name(rule), "GET", path, headers and {"headers": headers}))
    return pages, unfilled
