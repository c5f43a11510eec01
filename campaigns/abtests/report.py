"""An A/B test in the campaign report: each variant's figures over the test share (sent, people who opened,
clicked or redeemed, sends opened only by machines — shown, never counted), the decision and its confidence, and what
went to the rest."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from campaigns.abtests import figures as figures_service
from campaigns.models import variant_letter
from campaigns.sending import variants


def summary(session: Session, campaign_id: int) -> dict[str, Any] | None:
    """The report's A/B section (JSON-ready); None for a campaign without a test."""
    test = variants.test_of(session, campaign_id)
    if test is None:
        return None
    n = variants.variant_count(test)
    share = figures_service.per_variant(session, campaign_id, n, before=test.decided_at)
    rest = figures_service.per_variant(session, campaign_id, n, after=test.decided_at) if test.decided_at else []
    return {
        "test_percent": test.test_percent,
        "criterion": str(test.criterion),
        "criterion_label": variants.CRITERION_WORDS.get(str(test.criterion), str(test.criterion)),
        "phase": str(test.phase),
        "variants": [{**f.as_dict(), "rate": round(f.rate(test.criterion), 4),
                      "subject": _subject(test, f.variant)} for f in share],
        "outcome": test.outcome,
        "best": variant_letter(test.best) if test.best is not None else None,
        "winner": variant_letter(test.winner) if test.winner is not None else None,
        "confidence": test.confidence,
        "decision": test.decision,
        "decided_at": test.decided_at.isoformat() if test.decided_at else None,
        "rest_sent": sum(f.sent for f in rest),
    }


def _subject(test, position: int) -> str:
    variant = next((v for v in test.variants if v.position == position), None)
    return (variant.subject if variant is not None else "") or ""
