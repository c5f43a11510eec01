"""Double opt-in signup in one namespace for the web endpoints, the admin and the jobs: forms
(campaigns.signup.forms), the request, confirmation mail, confirming and expiry (campaigns.signup.confirmation), and
the consent records (campaigns.signup.consent). docs/signup.md describes the flow.
"""

from __future__ import annotations

from campaigns.models import SignupForm
from campaigns.signup.confirmation import (
    ADDRESS_PER_HOUR,
    IP_PER_HOUR,
    MAX_MAILS,
    RESEND_AFTER,
    SIGNUP_TTL,
    Confirmation,
    ConfirmOutcome,
    ConsentChanged,
    RateLimitExceeded,
    SignupRequest,
    admit,
    confirm,
    confirm_url,
    expire_pending,
    handle_request,
    open_confirmation,
    parse_request,
    request_signup,
    send_confirmation,
    submit,
)
from campaigns.signup.consent import export_csv, recent_signups
from campaigns.signup.forms import (
    HONEYPOT,
    MAX_CONSENT_TEXT,
    embed_snippet,
    get_form,
    hosted_url,
    list_forms,
    public_form,
    public_topics,
    save_form,
)

__all__ = ["ADDRESS_PER_HOUR", "HONEYPOT", "IP_PER_HOUR", "MAX_CONSENT_TEXT", "MAX_MAILS",
           "RESEND_AFTER", "SIGNUP_TTL", "Confirmation", "ConfirmOutcome", "ConsentChanged", "RateLimitExceeded",
           "SignupForm", "SignupRequest", "admit", "confirm", "confirm_url", "embed_snippet", "expire_pending",
           "export_csv", "get_form", "handle_request", "hosted_url", "list_forms", "open_confirmation", "parse_request",
           "public_form", "public_topics", "recent_signups", "request_signup", "save_form", "send_confirmation",
           "submit"]
