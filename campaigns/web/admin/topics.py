"""Admin: topics (the lists contacts subscribe to), with their subscriber counts."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from campaigns.models import AdminRole, Topic
from campaigns.reports import summaries
from campaigns.web.admin.blueprint import bp
from campaigns.web.context import db, rt


@bp.route("/topics", methods=["GET", "POST"])
@login_required
def topics():
    session = db()
    if request.method == "POST":
        if current_user.role == AdminRole.VIEWER:
            abort(403)
        name = request.form.get("name", "").strip()
        if not name:
            flash("A topic needs a name.", "error")
        elif session.scalar(select(Topic.id).where(func.lower(Topic.name) == name.lower())):
            flash(f"There is already a topic called {name}.", "error")
        else:
            session.add(Topic(name=name[:200], description=request.form.get("description", "")[:2000]))
            session.commit()
            flash(f"Topic {name} created.", "info")
            return redirect(url_for("admin.topics"))
    sizes = summaries.get(rt(), session, "topics", max_age=300)
    known = sizes.value or {}
    rows = [(topic, known.get(str(topic.id), 0 if sizes.value is not None else None))
            for topic in session.scalars(select(Topic).order_by(Topic.name))]
    return render_template("admin/topics.html", rows=rows, sizes=sizes)
