"""Relay webhook credentials and the coupon API's fallback token are Settings, read once from the environment."""

from __future__ import annotations

from pathlib import Path

from campaigns.config import from_env

ENV = {"RAPPORT_INSTANCE": "", "SECRET_KEY": "s" * 40}


def settings(tmp_path: Path, **extra: str):
    return from_env({**ENV, "RAPPORT_INSTANCE": str(tmp_path), **extra})


def test_relay_credentials_and_api_token_come_from_the_environment(tmp_path: Path) -> None:
    s = settings(tmp_path, RAPPORT_WEBHOOK_SECRET="hook-secret", RAPPORT_MAILGUN_SIGNING_KEY="key-mailgun",
                 RAPPORT_SENDGRID_VERIFICATION_KEY="  MFkwEwYHKoZIzj0CAQ==\n",
                 RAPPORT_SES_TOPIC_ARNS="arn:aws:sns:eu-west-1:1:bounces, ,arn:aws:sns:eu-west-1:1:complaints",
                 RAPPORT_COUPON_API_TOKEN=" shop-token ")
    assert s.webhook_secret == "hook-secret"
    assert s.mailgun_signing_key == "key-mailgun"
    assert s.sendgrid_verification_key == "MFkwEwYHKoZIzj0CAQ=="
    assert s.ses_topic_arns == ("arn:aws:sns:eu-west-1:1:bounces", "arn:aws:sns:eu-west-1:1:complaints")
    assert s.coupon_api_token == "shop-token"


def test_unset_credentials_are_empty(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert (s.webhook_secret, s.mailgun_signing_key, s.sendgrid_verification_key, s.coupon_api_token) == ("",) * 4
    assert s.ses_topic_arns == ()


def test_the_coupon_api_accepts_the_configured_token(app, client) -> None:
    from campaigns.web.context import rt

    with app.app_context():
        runtime = rt()
        runtime.settings = runtime.settings.with_overrides({"coupon_api_token": "shop-token-1234567890"})
    body = {"code": "NOPE", "reference": "order 1"}
    refused = client.post("/admin/api/coupons/redeem", json=body, headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    known = client.post("/admin/api/coupons/redeem", json=body,
                        headers={"Authorization": "Bearer shop-token-1234567890"})
    assert known.status_code != 401
