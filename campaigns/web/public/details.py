"""The preference center's details page: a contact updates their postal address, phone, birthday, time zone,
interests and "no post, please" (campaigns.feedback.details). GET and HEAD only show the form; a POST (with the
page's CSRF token) changes the details; a refused POST shows every problem next to its field and keeps what was
typed."""

from __future__ import annotations

from flask import render_template, request
from sqlalchemy import select

from campaigns.feedback import details as service
from campaigns.feedback import preferences as feedback
from campaigns.models import ContactInterest
from campaigns.post import addresses as post_addresses
from campaigns.web.context import db
from campaigns.web.public.blueprint import bp, open_token
from mailer.tracking import Purpose


@bp.route("/p/<token>/details", methods=["GET", "POST"])
def details(token: str):
    (contact_id,) = open_token(Purpose.PREFERENCES, token)
    if not contact_id:     # the link of a test message: it names no contact
        return render_template("public/unsubscribe_done.html", test=True, everything=True, topics=[])
    session = db()
    contact = feedback.resolve_unsubscribe(session, contact_id, 0).contact   # an erased contact: the 404 page
    changes: list[str] = []
    errors: dict[str, str] = {}
    values = None
    if request.method == "POST":
        try:
            parsed = service.parse(request.form, current=contact)
            changes = service.update_details(session, contact, parsed)
            session.commit()
        except service.DetailsInvalid as exc:
            session.rollback()
            errors = exc.errors
            values = {k: request.form.get(k, "")[:300] for k in
                      (*service.TEXT_FIELDS, "country", "phone", "timezone", "birth_day", "birth_month",
                       "birth_year", "interests")}
            values["no_post"] = request.form.get("no_post") == "1"
    if values is None:
        interests = list(session.scalars(select(ContactInterest.interest)
                                         .where(ContactInterest.contact_id == contact.id)
                                         .order_by(ContactInterest.interest)))
        values = service.form_values(contact, interests, post_addresses.no_post(session, contact.id))
    return render_template("public/details.html", contact=contact, token=token, v=values, errors=errors,
                           changes=changes, countries=service.countries(), zones=service.time_zones(),
                           months=service.MONTHS), 422 if errors else 200
