"""Admin pages: double opt-in signup forms — write one, copy its link or snippet, see sign-ups, export the proof."""

from __future__ import annotations

import logging

from flask import Response, flash, redirect, render_template, request, url_for
from flask_login import login_required

from campaigns.errors import RapportError
from campaigns.models import SignupForm
from campaigns.signup import service as signup_service
from campaigns.web.admin.audit import Action, audit
from campaigns.web.admin.blueprint import bp, editor_required
from campaigns.web.admin.helpers import streamed_csv
from campaigns.web.context import db, rt
from campaigns.web.lookup import get_or_404

logger = logging.getLogger(__name__)

DEFAULT_CONSENT = ("I would like to receive the newsletters I ticked above by email. I can unsubscribe at any time "
                   "with the link in every mail. My data is used only to send them (see our privacy notice).")


@bp.get("/signups")
@login_required
def signup_forms():
    return render_template("admin/signups/index.html", rows=signup_service.list_forms(db()),
                           base_url=rt().settings.base_url)


@bp.route("/signups/new", methods=["GET", "POST"])
@bp.route("/signups/<int:form_id>/edit", methods=["GET", "POST"])
@editor_required
def signup_form_edit(form_id: int | None = None):
    session = db()
    form = get_or_404(db(), SignupForm, form_id) if form_id else None
    topics = signup_service.public_topics(session)
    if request.method == "POST":
        data = {k: request.form.get(k, "") for k in ("name", "title", "intro", "consent_text")}
        data["active"] = request.form.get("active", "")
        old_version = form.consent_version if form else 0
        try:
            saved = signup_service.save_form(session, data, request.form.getlist("topics"), form)
            session.commit()
        except RapportError as exc:
            session.rollback()
            flash(str(exc)[:1].upper() + str(exc)[1:] + ".", "error")
            form = get_or_404(db(), SignupForm, form_id) if form_id else None
            return render_template("admin/signups/edit.html", form=form, values=request.form,
                                   chosen=set(request.form.getlist("topics")), topics=topics), 400
        if form is not None and saved.consent_version != old_version:
            flash(f"Saved. The consent text changed, so it is now version {saved.consent_version}: new sign-ups "
                  "record it, earlier ones keep the text they agreed to. Update embedded snippets.", "info")
        else:
            flash("Sign-up form saved.", "info")
        return redirect(url_for("admin.signup_form_detail", form_id=saved.id))
    if form is not None:
        values = {"name": form.name, "title": form.title, "intro": form.intro, "consent_text": form.consent_text,
                  "active": "1" if form.active else ""}
        chosen = {str(t.id) for t in form.topics}
    else:
        values = {"name": "", "title": "Get our newsletter", "intro": "", "consent_text": DEFAULT_CONSENT,
                  "active": "1"}
        chosen = {str(t.id) for t in topics[:1]}
    return render_template("admin/signups/edit.html", form=form, values=values, chosen=chosen, topics=topics)


@bp.get("/signups/<int:form_id>")
@login_required
def signup_form_detail(form_id: int):
    form = get_or_404(db(), SignupForm, form_id)
    base = rt().settings.base_url
    counts = {f.id: (p, c) for f, p, c in signup_service.list_forms(db())}.get(form.id, (0, 0))
    return render_template("admin/signups/detail.html", form=form, hosted=signup_service.hosted_url(form, base),
                           snippet=signup_service.embed_snippet(form, base), pending=counts[0], confirmed=counts[1],
                           recent=signup_service.recent_signups(db(), form.id))


@bp.get("/signups/<int:form_id>/consent.csv")
@login_required
def signup_form_export(form_id: int) -> Response:
    form = get_or_404(db(), SignupForm, form_id)
    audit(Action.SIGNUP_CONSENT_EXPORT, f"signup form {form.id}", form.name)
    return streamed_csv(form.name, "signup-form", "consent",
                        lambda session: signup_service.export_csv(session, form_id))
