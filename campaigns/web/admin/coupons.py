"""Coupon pools: create, import or generate codes, redeem, per-campaign report, and the shop's redemption API."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from urllib.parse import quote

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from campaigns.coupons import codes, redemption
from campaigns.coupons import pools as coupon_service
from campaigns.coupons import reports as coupon_reports
from campaigns.errors import RapportError, ValidationError
from campaigns.models import CouponPool
from campaigns.orders import tiers as loyalty_tiers
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.context import csrf, db, rt
from campaigns.web.lookup import get_or_404

logger = logging.getLogger(__name__)
MAX_JSON = 16 * 1024
# The bearer-token shop endpoints below were replaced by /api/v1 when it landed (RFC 9745 Deprecation header).
DEPRECATED_SINCE = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


@bp.route("/coupons", methods=["GET", "POST"])
@login_required
def coupon_pools():
    """The pools with their counts, a form for a new pool, and the shop's API tokens."""
    session = db()
    form = None
    if request.method == "POST":
        if current_user.role not in ("admin", "editor"):
            abort(403)
        try:
            pool = coupon_service.save_pool(session, request.form)
            session.commit()
            flash(f"Pool {pool.name} created. Now import or generate its codes.", "info")
            return redirect(url_for("admin.coupon_pool", pool_id=pool.id))
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            form = request.form
    pools = coupon_service.list_pools(session)
    counts = coupon_service.pool_counts(session, [p.id for p in pools])
    status = 400 if form is not None else 200
    return render_template("admin/coupons/index.html", pools=pools, counts=counts, form=form,
                           tier_names=loyalty_tiers.tier_names(session),
                           tokens=redemption.list_api_tokens(session),
                           api_url=url_for("admin.coupon_api_redeem", _external=True)), status


@bp.route("/coupons/<int:pool_id>", methods=["GET", "POST"])
@login_required
def coupon_pool(pool_id: int):
    """One pool: its numbers per campaign, import, generate, redeem, and its settings."""
    session = db()
    pool = get_or_404(db(), CouponPool, pool_id)
    form = None
    if request.method == "POST":
        if current_user.role not in ("admin", "editor"):
            abort(403)
        try:
            coupon_service.save_pool(session, request.form, pool)
            session.commit()
            flash("Pool saved.", "info")
            return redirect(url_for("admin.coupon_pool", pool_id=pool.id))
        except ValidationError as exc:
            session.rollback()
            flash(str(exc), "error")
            form = request.form
            pool = get_or_404(db(), CouponPool, pool_id)
    counts = coupon_service.pool_counts(session, [pool.id]).get(pool.id, {"total": 0, "free": 0, "issued": 0,
                                                                          "redeemed": 0})
    return render_template("admin/coupons/pool.html", pool=pool, counts=counts, form=form,
                           tier_names=loyalty_tiers.tier_names(session),
                           report=coupon_reports.pool_report(session, pool.id),
                           recent=coupon_reports.recent_codes(session, pool.id),
                           status_of=redemption.code_status,
                           lookup=request.args.get("code", "")[:64]), 400 if form is not None else 200


@bp.post("/coupons/<int:pool_id>/import")
@editor_required
def coupon_import(pool_id: int):
    """Import a CSV of codes: all or nothing, with every problem named."""
    session = db()
    get_or_404(db(), CouponPool, pool_id)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a CSV file with the codes.", "error")
        return redirect(url_for("admin.coupon_pool", pool_id=pool_id))
    data = upload.read(codes.MAX_IMPORT_BYTES + 1)
    try:
        result = codes.import_codes(session, pool_id, data,
                                    skip_existing_in_pool=request.form.get("skip_existing") == "1")
        session.commit()
        note = f" ({result.already_in_pool} already in the pool were left as they are)" \
            if result.already_in_pool else ""
        flash(f"{result.added} codes imported{note}.", "info")
    except ValidationError as exc:
        session.rollback()
        flash(f"{upload.filename}: {exc}", "error")
    return redirect(url_for("admin.coupon_pool", pool_id=pool_id))


def _int_field(name: str, default: int) -> int:
    raw = request.form.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or len(raw) > 7:
        raise ValidationError(f"{name} must be a whole number", field=name)
    return int(raw)


@bp.post("/coupons/<int:pool_id>/generate")
@editor_required
def coupon_generate(pool_id: int):
    """Generate random codes (alphabet without look-alikes, optional prefix)."""
    session = db()
    get_or_404(db(), CouponPool, pool_id)
    try:
        n = codes.generate_codes(session, pool_id, _int_field("count", 0), _int_field("length", 10),
                                 request.form.get("prefix", ""))
        session.commit()
        flash(f"{n} codes generated.", "info")
    except ValidationError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.coupon_pool", pool_id=pool_id))


@bp.post("/coupons/<int:pool_id>/redeem")
@editor_required
def coupon_redeem(pool_id: int):
    """Mark a code redeemed by hand (a customer used it in the shop)."""
    session = db()
    get_or_404(db(), CouponPool, pool_id)
    code = request.form.get("code", "")
    try:
        done = redemption.redeem(session, code, reference=request.form.get("reference", ""),
                                by=f"admin: {current_user.email}")
        session.commit()
        flash(f"Code {done['code']} marked redeemed.", "info")
    except redemption.RedeemError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.coupon_pool", pool_id=pool_id, code=code.strip()[:64]))


@bp.post("/coupons/tokens")
@editor_required
def coupon_token_create():
    """A new bearer token for the shop's redemption calls, shown once."""
    try:
        token = redemption.create_api_token(db(), request.form.get("token_name", ""), created_by=current_user.email)
        db().commit()
        flash(f"New API token (copy it now, it is not shown again): {token}", "info")
    except ValidationError as exc:
        flash(str(exc), "error")
    return redirect(url_for("admin.coupon_pools"))


@bp.post("/coupons/tokens/<int:token_id>/revoke")
@editor_required
def coupon_token_revoke(token_id: int):
    try:
        redemption.revoke_api_token(db(), token_id)
        db().commit()
        flash("Token revoked: calls with it are refused from now on.", "info")
    except RapportError as exc:
        flash(str(exc), "error")
    return redirect(url_for("admin.coupon_pools"))


# ------------------------------------------------------------------ shop API (bearer token, JSON)

def _api_error(message: str, http_status: int, detail: dict | None = None):
    resp = jsonify({**(detail or {}), "error": message})
    resp.status_code = http_status
    if http_status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="rapport-coupons"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _api_caller() -> str | None:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return None
    configured = rt().settings.coupon_api_token or str(current_app.config.get("COUPON_API_TOKEN", "") or "")
    caller = redemption.authenticate(db(), auth[7:], configured)
    db().commit()   # the token's last use
    return caller


def _deprecated(successor: str):
    """Mark a response of a deprecated endpoint: `Deprecation` (RFC 9745) and a Link to the endpoint replacing it."""
    def wrap(view):
        @functools.wraps(view)
        def marked(*args, **kwargs):
            response = current_app.make_response(view(*args, **kwargs))
            response.headers["Deprecation"] = f"@{int(DEPRECATED_SINCE.timestamp())}"
            target = successor.format(**{key: quote(str(value), safe="") for key, value in kwargs.items()})
            response.headers["Link"] = f'<{target}>; rel="successor-version"'
            return response
        return marked
    return wrap


@bp.post("/api/coupons/redeem")
@csrf.exempt   # the shop authenticates with its bearer token, not a session
@_deprecated("/api/v1/coupons/redeem")
def coupon_api_redeem():
    """POST {"code": "...", "reference": "order 123"} with Authorization: Bearer <token>."""
    caller = _api_caller()
    if caller is None:
        return _api_error("missing or unknown API token (send Authorization: Bearer <token>)", 401)
    if (request.content_length or 0) > MAX_JSON:
        return _api_error("the body is too large", 413)
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return _api_error('send a JSON object like {"code": "ABC123", "reference": "order 1001"}', 400)
    code, reference = payload.get("code"), payload.get("reference", "")
    if not isinstance(code, str) or not code.strip():
        return _api_error('"code" must be a non-empty string', 400)
    if not isinstance(reference, str | int):
        return _api_error('"reference" must be a string', 400)
    try:
        done = redemption.redeem(db(), code, reference=str(reference), by=f"api: {caller}")
        db().commit()
        return jsonify(done)
    except redemption.RedeemError as exc:
        db().rollback()
        return _api_error(str(exc), exc.status, exc.detail)


@bp.get("/api/coupons/<path:code>")
@_deprecated("/api/v1/coupons/{code}")
def coupon_api_status(code: str):
    """GET the status of a code: free, issued, redeemed or expired."""
    if _api_caller() is None:
        return _api_error("missing or unknown API token (send Authorization: Bearer <token>)", 401)
    try:
        found, pool = redemption.find_code(db(), code)
    except redemption.RedeemError as exc:
        return _api_error(str(exc), exc.status)
    return jsonify(redemption.describe(found, pool))


@bp.app_template_global()
def coupon_pool_choices() -> list[tuple[object, int]]:
    """(pool, free codes) for the campaign form's pool picker."""
    session = db()
    pools = coupon_service.list_pools(session)
    counts = coupon_service.pool_counts(session, [p.id for p in pools])
    return [(p, counts.get(p.id, {}).get("free", 0)) for p in pools]
