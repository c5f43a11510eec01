"""Admin accounts: password hashing, login with throttling, and user management (roles, deactivation)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from campaigns.addresses import normalize_email
from campaigns.errors import NotFound, ValidationError
from campaigns.models import AdminRole, AdminUser, LoginFailure, utcnow

logger = logging.getLogger(__name__)

MIN_PASSWORD = 10
# Failed logins allowed within THROTTLE_WINDOW before further attempts are refused (without checking the password).
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_IP = 20
THROTTLE_WINDOW = dt.timedelta(minutes=15)
# A hash for unknown addresses, so a login for them costs the same time as one for a real account.
_DUMMY_HASH = generate_password_hash("rapport-dummy-password")
# The method and parameters new hashes get ("scrypt:32768:8:1"); older hashes are upgraded at the next login.
CURRENT_METHOD = _DUMMY_HASH.split("$", 1)[0]


class LoginThrottled(ValidationError):
    """Too many failed logins recently; retry_after says for how long (seconds) attempts are refused."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def hash_password(password: str) -> str:
    """A salted scrypt hash (werkzeug) of a password that passed check_password_rules."""
    return generate_password_hash(password)


def check_password_rules(password: str, email: str = "") -> None:
    """Raise ValidationError unless the password is long enough and not the address itself."""
    if len(password) < MIN_PASSWORD:
        raise ValidationError(f"The password needs at least {MIN_PASSWORD} characters.", field="password")
    if len(password) > 1000:
        raise ValidationError("The password is too long (at most 1,000 characters).", field="password")
    if email and password.strip().lower() == email.strip().lower():
        raise ValidationError("The password must not be the email address.", field="password")


def _throttle(session: Session, email: str, ip: str, now: dt.datetime) -> None:
    since = now - THROTTLE_WINDOW
    for column, value, limit in ((LoginFailure.email, email, MAX_FAILURES_PER_ACCOUNT),
                                 (LoginFailure.ip, ip, MAX_FAILURES_PER_IP)):
        count, oldest = session.execute(
            select(func.count(), func.min(LoginFailure.at)).where(column == value, LoginFailure.at > since)).one()
        if count >= limit:
            # Sliding window: attempts are allowed again when the oldest counted failure leaves the window.
            retry = max(60, int((oldest + THROTTLE_WINDOW - now).total_seconds()) + 1)
            minutes = (retry + 59) // 60
            raise LoginThrottled(f"Too many failed logins. Please wait {minutes} minute{'s' * (minutes != 1)} "
                                 "and try again.", retry)


def authenticate(session: Session, email: str, password: str, ip: str) -> AdminUser:
    """The active user with this address and password; raises LoginThrottled or ValidationError. The caller
    commits in every case: a failed attempt is recorded (it counts toward the throttle) before the error is raised.

    Failures are recorded per address and per IP; while either has too many within THROTTLE_WINDOW, attempts are
    refused before the password is even checked. A hash made with older parameters is upgraded on success.
    """
    email = email.strip().lower()[:320]
    ip = (ip or "unknown")[:64]
    now = utcnow()
    _throttle(session, email, ip, now)
    user = session.scalar(select(AdminUser).where(AdminUser.email == email)) if email else None
    ok = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
    if not (user and ok and user.active):
        session.add(LoginFailure(email=email, ip=ip, at=now))
        # Old failures only matter inside the window; drop them as we go (indexed on at).
        session.execute(delete(LoginFailure).where(LoginFailure.at < now - dt.timedelta(days=1)))
        session.flush()
        raise ValidationError("Wrong email or password.", field="password")
    if not user.password_hash.startswith(CURRENT_METHOD + "$"):
        user.password_hash = hash_password(password)
        logger.info("upgraded the password hash of admin user %s", user.id)
    session.execute(delete(LoginFailure).where(LoginFailure.email == email))
    user.last_login_at = now
    return user


# ---------------------------------------------------------------- user management

@dataclass(frozen=True)
class UserForm:
    """What the users page submits for a new user."""

    email: str
    name: str
    role: str
    password: str


def _role(value: str) -> AdminRole:
    try:
        return AdminRole(value)
    except ValueError:
        raise ValidationError("Choose a role: admin, editor or viewer.", field="role") from None


def list_users(session: Session) -> list[AdminUser]:
    """Every admin user, active ones first."""
    return list(session.scalars(select(AdminUser).order_by(AdminUser.active.desc(), AdminUser.email)))


def get_user(session: Session, user_id: int) -> AdminUser:
    """One user or NotFound."""
    user = session.get(AdminUser, user_id)
    if user is None:
        raise NotFound("There is no such user.")
    return user


def create_user(session: Session, form: UserForm) -> AdminUser:
    """Add a user with a role and an initial password (caller commits)."""
    try:
        email = normalize_email(form.email, own_address=True)
    except ValidationError as exc:
        raise ValidationError(str(exc), field="email") from None
    if session.scalar(select(AdminUser.id).where(AdminUser.email == email)):
        raise ValidationError(f"There is already a user {email}.", field="email")
    role = _role(form.role)
    check_password_rules(form.password, email)
    name = form.name.strip()[:200] or email.split("@")[0]
    user = AdminUser(email=email, name=name, role=role, active=True, password_hash=hash_password(form.password))
    session.add(user)
    session.flush()
    return user


def _other_active_admins(session: Session, user: AdminUser) -> int:
    return session.scalar(select(func.count()).select_from(AdminUser).where(
        AdminUser.role == AdminRole.ADMIN, AdminUser.active.is_(True), AdminUser.id != user.id)) or 0


def change_user(session: Session, user_id: int, *, role: str | None = None, active: bool | None = None,
                password: str | None = None) -> AdminUser:
    """Change a user's role, active flag or password; never leaves the app without an active admin."""
    user = get_user(session, user_id)
    new_role = _role(role) if role is not None else AdminRole(user.role)
    new_active = user.active if active is None else active
    was_admin = user.role == AdminRole.ADMIN and user.active
    if was_admin and (new_role != AdminRole.ADMIN or not new_active) and _other_active_admins(session, user) == 0:
        raise ValidationError(f"{user.email} is the last active admin. Make another user admin first.",
                              field="role")
    if password is not None:
        check_password_rules(password, user.email)
        user.password_hash = hash_password(password)
    user.role, user.active = new_role, new_active
    return user
