"""Deciding an A/B test: at its time the test share's figures are judged (campaigns.abtests.stats) and the winner —
or, without a significant difference, the default variant — goes to the rest of the audience, or a person picks.

The decision is made by a periodic job (`decide_ab_tests`, every minute, one elected worker) that finds every due
test, not by one delayed job: a worker restart or a lost job only delays it to the next minute. Each decision is one
conditional UPDATE (phase test -> decided/rest) in the same transaction as the campaign's dispatch reset, so two
runs never both decide, and a crash before the commit leaves the test to the next run. Sending the rest is the
ordinary dispatch (campaigns.sending.lifecycle.dispatch, resumed by the delivery sweeper if its job is lost), through
the contact policy like any send.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from campaigns.abtests import figures as figures_service
from campaigns.abtests import stats
from campaigns.errors import InvalidState, ValidationError
from campaigns.models import (
    AbOutcome,
    AbPhase,
    AbTest,
    Campaign,
    CampaignStatus,
    Send,
    SendStatus,
    utcnow,
    variant_letter,
)
from campaigns.runtime import Runtime
from campaigns.sending import sweeper, variants
from campaigns.sending.committed import when_committed

logger = logging.getLogger(__name__)

CRITERION_WORDS = variants.CRITERION_WORDS


def explain(test: AbTest, figs: list[figures_service.VariantFigures], verdict: stats.Judgement) -> str:
    """The decision in words, with the figures and the confidence statement."""
    words = CRITERION_WORDS.get(str(test.criterion), str(test.criterion))
    shares = ", ".join(f"{f.letter} {f.count(test.criterion)} of {f.sent} ({f.rate(test.criterion):.1%})"
                       for f in figs)
    if verdict.best is None or not verdict.enough:
        return (f"Too few results to judge by {words} ({shares}): every variant needs {stats.MIN_SENT} recipients "
                f"and the test {stats.MIN_SUCCESSES} counted actions in all. No winner declared.")
    best = variant_letter(verdict.best)
    runner = variant_letter(verdict.runner_up)
    p = verdict.p_adjusted if verdict.p_adjusted is not None else 1.0
    test_words = (f"two-proportion z-test of {best} against {runner}: z = {verdict.z_min:.2f}, "
                  f"p = {p:.3f}{' after Bonferroni correction' if len(figs) > 2 else ''}")
    if verdict.significant:
        return (f"{best} wins by {words}: {shares}. {best} is better with {1 - p:.1%} confidence ({test_words}).")
    return (f"No significant difference by {words}: {shares}. {best} is ahead, but only with {max(0.0, 1 - p):.1%} "
            f"confidence ({test_words}; a winner needs {1 - stats.ALPHA:.0%}). No winner declared.")


def judge(session: Session, test: AbTest) -> tuple[list[figures_service.VariantFigures], stats.Judgement]:
    """The test share's figures now and the verdict on them."""
    figs = figures_service.per_variant(session, test.campaign_id, variants.variant_count(test), before=utcnow())
    verdict = stats.judge([(f.count(test.criterion), f.sent) for f in figs])
    return figs, verdict


def decide(rt: Runtime, session: Session, test: AbTest, now: dt.datetime | None = None) -> bool:
    """Judge a test still in its test phase and record the decision (the caller commits); False when another run
    decided it first. With a winner (or, without one, the default variant) and automatic sending, the rest goes."""
    now = now or utcnow()
    figs, verdict = judge(session, test)
    if verdict.significant:
        outcome, winner = AbOutcome.WINNER, verdict.best
    else:
        outcome = AbOutcome.NOT_SIGNIFICANT if verdict.enough else AbOutcome.TOO_FEW
        winner = test.default_variant if test.auto_send else None
    text = explain(test, figs, verdict)
    if winner is not None and outcome != AbOutcome.WINNER:
        text += f" The default variant {variant_letter(winner)} goes to the rest."
    elif winner is None:
        text += " Choose the variant the rest gets."
    phase = AbPhase.REST if test.auto_send and winner is not None else AbPhase.DECIDED
    done = session.execute(
        update(AbTest).where(AbTest.id == test.id, AbTest.phase == AbPhase.TEST)
        .values(phase=phase, decided_at=now, outcome=outcome, winner=winner, best=verdict.best,
                confidence=verdict.confidence, decision=text,
                figures=json.dumps([f.as_dict() for f in figs]))
        .execution_options(synchronize_session=False)).rowcount
    if not done:
        return False
    session.expire(test)
    if phase == AbPhase.REST:
        _send_rest(rt, session, test.campaign_id)
    logger.info("A/B test of campaign %s decided: %s", test.campaign_id, text)
    return True


def _send_rest(rt: Runtime, session: Session, campaign_id: int) -> None:
    """Walk the audience again for the rest (dispatch gives new rows the winner); the dispatch job follows the
    commit, and the delivery sweeper enqueues it again if it is lost."""
    running = session.execute(update(Campaign).where(Campaign.id == campaign_id,
                                                     Campaign.status == CampaignStatus.RUNNING)
                              .values(dispatched_at=None, dispatch_cursor=0)).rowcount
    if not running:   # a paused campaign walks the audience again when it is resumed (lifecycle.start)
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(dispatch_cursor=0))
        return
    when_committed(session, lambda: sweeper.ensure_job(rt, sweeper.Work.DISPATCH, campaign_id))


def pick(rt: Runtime, session: Session, campaign: Campaign, variant: int, who: str) -> None:
    """A person chooses the variant the rest gets (before the decision, or after one without automatic sending);
    the caller commits."""
    test = variants.test_of(session, campaign.id)
    if test is None:
        raise InvalidState("this campaign has no A/B test")
    if test.phase == AbPhase.REST:
        raise InvalidState(f"variant {variant_letter(test.winner)} already goes to the rest")
    if campaign.status not in (CampaignStatus.RUNNING, CampaignStatus.PAUSED):
        raise InvalidState(f"the A/B test can be decided while the campaign sends (it is {campaign.status})")
    if not 0 <= variant < variants.variant_count(test):
        raise ValidationError("choose one of the test's variants", field="variant")
    text = test.decision or f"Decided before the set time; the figures then: {explain(test, *judge(session, test))}"
    text = f"{text} {variant_letter(variant)} chosen for the rest by {who}."
    done = session.execute(
        update(AbTest).where(AbTest.id == test.id, AbTest.phase.in_([AbPhase.TEST, AbPhase.DECIDED]))
        .values(phase=AbPhase.REST, winner=variant, decision=text, decided_at=test.decided_at or utcnow(),
                outcome=test.outcome or AbOutcome.PICKED)
        .execution_options(synchronize_session=False)).rowcount
    if not done:
        raise InvalidState("the test was decided meanwhile; reload the page")
    session.expire(test)
    _send_rest(rt, session, campaign.id)


def decide_due(rt: Runtime, now: dt.datetime | None = None) -> int:
    """Decide every test whose time has come and whose test share is no longer in flight; returns how many."""
    now = now or utcnow()
    decided = 0
    with rt.session_factory() as session:
        rows = session.execute(
            select(AbTest, Campaign).join(Campaign, Campaign.id == AbTest.campaign_id)
            .where(AbTest.phase == AbPhase.TEST, Campaign.status == CampaignStatus.RUNNING,
                   Campaign.dispatched_at.is_not(None))).all()
        for test, campaign in rows:
            due = variants.decision_due(test, campaign)
            if due is None or due > now:
                continue
            in_flight = session.scalar(select(exists().where(
                Send.campaign_id == campaign.id, Send.status.in_([SendStatus.QUEUED, SendStatus.SENDING]))))
            if in_flight:   # the test share is still going out: judging now would favour the early variants
                continue
            decided += decide(rt, session, test, now)
            session.commit()
    return decided
