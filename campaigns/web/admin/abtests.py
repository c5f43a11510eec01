"""A campaign's A/B test page: set up variants B-D, the test share, criterion and wait (draft or scheduled), preview
and test-send each variant, follow the test's figures, and choose the variant the rest gets."""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from campaigns.abtests import decide, setup
from campaigns.abtests import figures as figures_service
from campaigns.composing import contributions
from campaigns.composing import editor as campaign_service
from campaigns.contacts import records as contact_service
from campaigns.errors import RapportError
from campaigns.models import MAX_VARIANTS, AbCriterion, Campaign, Contact, variant_letter
from campaigns.sending import test_sends, variants
from campaigns.web.admin.audit import Action, audit
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.admin.helpers import PREVIEW_CSP, escape_text
from campaigns.web.context import db, rt
from campaigns.web.lookup import get_or_404
from mailer.compose import TemplateError

CRITERIA = [(AbCriterion.HUMAN_CLICKS, "People's clicks (recommended)"),
            (AbCriterion.HUMAN_OPENS, "People's opens (machine opens never count)"),
            (AbCriterion.COUPON_REDEMPTIONS, "Coupon redemptions"),
            (AbCriterion.REPLIES, "People's replies (out-of-office never counts)")]


def _page(obj: Campaign, form=None, errors: list[str] | None = None, status: int = 200):
    session = db()
    test = variants.test_of(session, obj.id)
    figs = []
    if test is not None and obj.started_at is not None:
        figs = figures_service.per_variant(session, obj.id, variants.variant_count(test), before=test.decided_at)
    rest = figures_service.per_variant(session, obj.id, variants.variant_count(test), after=test.decided_at) \
        if test is not None and test.decided_at is not None else []
    return render_template(
        "admin/abtest.html", campaign=obj, test=test, form=form, errors=errors or [], criteria=CRITERIA,
        letters=[variant_letter(i) for i in range(MAX_VARIANTS)], figures=figs,
        rest_sent=sum(f.sent for f in rest), due=variants.decision_due(test, obj) if test else None,
        editable=obj.status in setup.SETUP_STATUSES), status


@bp.route("/campaigns/<int:campaign_id>/abtest", methods=["GET", "POST"])
@login_required
def campaign_abtest(campaign_id: int):
    obj = get_or_404(db(), Campaign, campaign_id)
    if request.method == "GET":
        return _page(obj)
    if current_user.role not in ("admin", "editor"):
        return _page(obj, errors=["Only editors can set up an A/B test."], status=403)
    session = db()
    try:
        test = setup.save(session, obj, request.form)
        detail = f"{obj.name}: {variants.variant_count(test)} variants, {test.test_percent}% by {test.criterion}"
        session.commit()
        audit(Action.CAMPAIGN_AB_TEST, f"campaign {obj.id}", detail)
        flash("A/B test saved. It starts with the campaign: the test share first, then the winner.", "info")
        return redirect(url_for("admin.campaign_abtest", campaign_id=campaign_id))
    except RapportError as exc:
        session.rollback()
        return _page(get_or_404(db(), Campaign, campaign_id), request.form, [str(exc)], 422)


@bp.post("/campaigns/<int:campaign_id>/abtest/remove")
@editor_required
def campaign_abtest_remove(campaign_id: int):
    session = db()
    obj = get_or_404(session, Campaign, campaign_id)
    try:
        if setup.remove(session, obj):
            session.commit()
            audit(Action.CAMPAIGN_AB_TEST, f"campaign {obj.id}", f"{obj.name}: A/B test removed")
            flash("A/B test removed: the campaign goes to its whole audience as it is.", "info")
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.campaign_abtest", campaign_id=campaign_id))


@bp.post("/campaigns/<int:campaign_id>/abtest/pick")
@editor_required
def campaign_abtest_pick(campaign_id: int):
    """A person chooses the variant the rest of the audience gets, and it goes."""
    session = db()
    obj = get_or_404(session, Campaign, campaign_id)
    raw = request.form.get("variant", "")[:2]
    try:
        variant = int(raw) if raw.isdigit() else -1
        decide.pick(rt(), session, obj, variant, current_user.name)
        session.commit()
        audit(Action.CAMPAIGN_AB_PICK, f"campaign {obj.id}", f"{obj.name}: variant {variant_letter(variant)}")
        flash(f"Variant {variant_letter(variant)} goes to the rest of the audience.", "info")
    except RapportError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.campaign_abtest", campaign_id=campaign_id))


@bp.post("/campaigns/<int:campaign_id>/abtest/test")
@editor_required
def campaign_abtest_test(campaign_id: int):
    """A [Test] copy of one variant to up to 10 addresses."""
    session = db()
    obj = get_or_404(session, Campaign, campaign_id)
    raw = request.form.get("variant", "")[:2]
    addresses = request.form.get("addresses", "")[:5000].replace(";", ",").replace("\n", ",").split(",")
    try:
        session.commit()   # the test is sent from a session of its own
        sent = test_sends.send_test(rt(), obj.id, addresses, variant=int(raw) if raw.isdigit() else 0)
        letter = variant_letter(int(raw) if raw.isdigit() else 0)
        audit(Action.CAMPAIGN_TEST, f"campaign {obj.id}", f"variant {letter} to {', '.join(sent)}")
        flash(f"Variant {letter} sent as a test to {', '.join(sent)}.", "info")
    except (RapportError, TemplateError) as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.campaign_abtest", campaign_id=campaign_id))


@bp.get("/campaigns/<int:campaign_id>/abtest/preview/<int:variant>")
@login_required
def campaign_abtest_preview(campaign_id: int, variant: int) -> Response:
    """A saved variant's HTML for its preview iframe, personalised as the first contact."""
    session = db()
    obj = get_or_404(session, Campaign, campaign_id)
    contact = session.scalar(select(Contact).order_by(Contact.id).limit(1))
    try:   # compiled here, nothing stored: a GET changes nothing (several previews load at once)
        chosen = variants.variant_at(session, obj.id, variant)
        if variant and chosen is None:
            raise RapportError(f"there is no variant {variant_letter(variant)}")
        compiled = campaign_service.compile_source(variants.source(obj, chosen))
        name, email = campaign_service.from_identity(obj, rt().settings)
        if chosen is not None and chosen.from_email:
            name, email = chosen.from_name or obj.from_name, chosen.from_email
        sender = campaign_service.sender_context(name, email, campaign_service.postal_address(session, rt().settings))
        extras = campaign_service.sample_extras(session, contributions.attributes_of(obj), rt().settings.base_url,
                                                rt().tokens)
        contact_vars = contact_service.personalization(contact, [i.interest for i in contact.interests]) \
            if contact is not None else dict(campaign_service.SAMPLE_CONTACT)
        ctx = {**extras, "contact": contact_vars,
               "sender": sender,
               "unsubscribe_url": "#unsubscribe", "preferences_url": "#preferences"}
        session.commit()   # no transaction is held while the template renders
        rendered = compiled.render(ctx, lambda i: compiled.links[i], "")
        html = rendered.html
    except (RapportError, TemplateError) as exc:
        session.rollback()
        html = f"<p style='font-family:sans-serif;color:#b91c1c'>Cannot preview: {escape_text(str(exc))}</p>"
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": PREVIEW_CSP})

