"""Admin: log in and log out."""

from __future__ import annotations

import time

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from campaigns.accounts import users as accounts
from campaigns.errors import ValidationError
from campaigns.web.admin.blueprint import bp
from campaigns.web.admin.helpers import local_path
from campaigns.web.context import db


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "POST":
        email = request.form.get("email", "")
        try:
            user = accounts.authenticate(db(), email, request.form.get("password", ""), request.remote_addr or "")
        except accounts.LoginThrottled as exc:
            flash(str(exc), "error")
            return render_template("admin/login.html", email=email[:320]), 429, {"Retry-After": str(exc.retry_after)}
        except ValidationError as exc:
            db().commit()           # the failed attempt is recorded: it counts toward the throttle
            flash(str(exc), "error")
            return render_template("admin/login.html", email=email[:320]), 401
        db().commit()
        session.clear()                 # nothing from before the login survives it
        session.permanent = True
        login_user(user)
        session["login_at"] = session["seen_at"] = int(time.time())
        # Only local paths: never let a crafted link send a fresh login elsewhere.
        return redirect(local_path(request.args.get("next", "")) or url_for("admin.dashboard"))
    if current_user.is_authenticated:
        return redirect(url_for("admin.dashboard"))
    return render_template("admin/login.html", email="")


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("admin.login"))
