"""Fixtures of the transactional tests: a receipt template, a key that may send, and a helper that posts."""

from __future__ import annotations

import base64

import pytest

from campaigns.models import ApiScope
from tests.campaigns.api.conftest import auth, make_key  # noqa: F401 - the fixture, shared

RECEIPT_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Thank you, {{ contact.first_name|default('friend', true) }}! Order {{ order_number }}:
{% for item in items %}{{ item.name }} × {{ item.qty }}; {% endfor %}total {{ total }}.</mj-text>
<mj-button href="https://shop.example.com/orders/track">Track your parcel</mj-button>
</mj-column></mj-section></mj-body></mjml>"""
PDF = b"%PDF-1.4\n% a tiny invoice\n" + bytes(range(256)) + b"\n%%EOF\n"


def pdf_attachment(name: str = "invoice-1042.pdf", data: bytes = PDF) -> dict:
    return {"filename": name, "content_type": "application/pdf", "content": base64.b64encode(data).decode()}


def receipt_body(to: str = "ada@example.com", **extra) -> dict:
    body = {"template": "order-receipt", "to": to, "to_name": "Ada Lovelace",
            "variables": {"order_number": "A-1042", "total": "€ 42.00",
                          "items": [{"name": "Seed tray", "qty": 2}, {"name": "Trowel", "qty": 1}]}}
    body.update(extra)
    return body


@pytest.fixture()
def receipt(db_session, make_campaign):
    """A transactional campaign named order-receipt."""
    from campaigns.composing.editor import save_campaign

    campaign = save_campaign(db_session, {"name": "Order receipt", "kind": "transactional", "slug": "order-receipt",
                                          "subject": "Your order {{ order_number }}", "mjml": RECEIPT_MJML})
    db_session.commit()
    return campaign


@pytest.fixture()
def tx_key(make_key) -> dict[str, str]:  # noqa: F811
    """Headers with a key holding only send:transactional."""
    return auth(make_key(ApiScope.SEND_TRANSACTIONAL.value))
