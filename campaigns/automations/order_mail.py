"""The order's part in a post-purchase mail (campaigns.composing.contributions): `order.reference`, `order.amount`,
`order.currency` and `order.date` of the order that started the run, for its buyer.

Every campaign gets `order`: the buyer's order in a run of a post-purchase automation (the latest of the day's
orders when one customer placed several), an empty mapping elsewhere — so `{{ order.reference }}` renders as nothing
in a mail that has no order instead of failing, and the composer's sample shows example values.

Registered when this module is imported (campaigns.capabilities).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.composing.contributions import Contributor, Recipient, SampleContribution, register
from campaigns.models import Automation, AutomationOrderOccurrence, AutomationRun, AutomationTrigger, Campaign, Order
from mailer.tracking import TokenCodec

if TYPE_CHECKING:
    from campaigns.runtime import Runtime

SAMPLE = {"reference": "#1001", "amount": "49.90", "currency": "EUR", "date": "2026-05-01"}


def orders_of_run(session: Session, campaign_id: int) -> dict[int, dict[str, str]]:
    """contact id -> the template values of their order in this run campaign ({} unless an order automation's)."""
    run_id = session.scalar(select(AutomationRun.id).join(Automation, Automation.id == AutomationRun.automation_id)
                            .where(AutomationRun.campaign_id == campaign_id,
                                   Automation.trigger == AutomationTrigger.ORDER).limit(1))
    if run_id is None:
        return {}
    found: dict[int, dict[str, str]] = {}
    for contact_id, order in session.execute(
            select(AutomationOrderOccurrence.contact_id, Order)
            .join(Order, Order.id == AutomationOrderOccurrence.order_id)
            .where(AutomationOrderOccurrence.run_id == run_id).order_by(Order.ordered_at, Order.id)):
        found[contact_id] = {"reference": order.reference or order.external_id or "", "amount": f"{order.amount:.2f}",
                             "currency": order.currency, "date": order.ordered_at.date().isoformat()}
    return found


class OrderDetails(Contributor):
    """The order a post-purchase mail is about."""

    name = "order-details"
    order = 60

    def sample(self, session: Session | None, choices: Mapping[str, Any], *, base_url: str,
               tokens: TokenCodec) -> SampleContribution | None:
        return SampleContribution({"order": dict(SAMPLE)})

    def prepare(self, rt: Runtime, session: Session, campaign: Campaign) -> dict[int, dict[str, str]]:
        return orders_of_run(session, campaign.id) if campaign.id is not None else {}

    def variables(self, state: dict[int, dict[str, str]], recipient: Recipient) -> dict[str, Any]:
        return {"order": dict(state.get(recipient.contact_id, {}))}


register(OrderDetails())
