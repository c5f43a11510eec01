"""The feature objects of the admin-at-scale data set (bench/admin_scale.py), at a plausible scale for its N contacts.

Every admin page that shows one object gets a real one, and every page that lists or counts rows gets as many as a
list of that size would have (per 1,000,000 contacts): 50,000 replies, 200,000 transactional messages, 100,000
outgoing-webhook events and deliveries, 50,000 draw entries, 20,000 event answers, 100,000 coupon codes (a third
assigned), 20,000 survey answers, 20,000 sign-ups, 10,000 printed letters, 100,000 audit entries and 50,000 loyalty
tier changes — plus an automation, a feed mailing, an A/B test, an archived issue, notes, an API key and tiers.

Parents are made through the ORM (their defaults applied), the big child tables bulk-loaded like the rest of the
data set (COPY on PostgreSQL). `seed` runs once per data set: a data set built before this module existed gets the
objects on its next run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import JSON, func, select, text

from bench.contacts_list import bulk_insert

BIG_CAMPAIGN = 301          # the sent campaign of bench/admin_scale.py (its audience: contacts with id % 10 != 0)
MJML = ("<mjml><mj-body><mj-section><mj-column><mj-text>Hello {{ contact.first_name }}</mj-text>"
        "<mj-button href=\"https://shop.test/roses\">Go</mj-button>"
        "<mj-text>{{ postal_address }} <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></mj-text>"
        "</mj-column></mj-section></mj-body></mjml>")


FILLED = ("reply", "tx_message", "webhook_event", "webhook_delivery", "draw_entry", "event_reply", "coupon_code",
          "survey_answer", "signup", "post_letter", "audit_entry", "tier_change")


def per_million(n: int, count: int) -> int:
    """count rows per 1,000,000 contacts, scaled to n contacts (at least 20, so a small run has a list)."""
    return max(20, count * n // 1_000_000)


def table_rows(model, rows: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, ...], Iterator[tuple]]:
    """Columns and value tuples for bulk_insert: the given values, else each column's Python default (what an
    ORM insert would write); JSON values serialised. The first row decides the columns (the id is left to the
    database unless given)."""
    it = iter(rows)
    first = next(it)
    table = model.__table__
    cols = [c for c in table.columns if c.name in first or (c.default is not None and not c.primary_key)]

    def value(column, row):
        if column.name in row:
            v = row[column.name]
        elif column.default is None:
            v = None
        elif column.default.is_callable:
            v = column.default.arg(None)
        else:
            v = column.default.arg
        return json.dumps(v) if isinstance(column.type, JSON) and v is not None else v

    def gen():
        yield tuple(value(c, first) for c in cols)
        for r in it:
            yield tuple(value(c, r) for c in cols)
    quoted = tuple(f'"{c.name}"' if c.name in ("references", "order", "key") else c.name for c in cols)
    return quoted, gen()


def bulk(engine, model, rows: Iterable[Mapping[str, Any]]) -> None:
    cols, data = table_rows(model, rows)
    bulk_insert(engine, [(model.__tablename__, cols, data)])


def seed(engine, session_factory, settings, n: int, now: dt.datetime) -> bool:
    """Add the feature objects unless the data set has them; returns whether it did."""
    from campaigns.models import Draw

    with session_factory() as session:
        if session.scalar(select(func.count()).select_from(Draw)):
            return False
    parents = _parents(session_factory, settings, now)
    _children(engine, n, now, parents)
    # Statistics for the tables just filled only (the rest of a 1,000,000-contact data set has them already).
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM ANALYZE {', '.join(FILLED)}"))
    else:
        with engine.begin() as conn:
            for table in FILLED:
                conn.execute(text(f"ANALYZE {table}"))
    return True


def _parents(session_factory, settings, now: dt.datetime) -> dict[str, int]:
    """The objects pages show one of; returns their ids by name."""
    from campaigns.abtests import setup as abtest_setup
    from campaigns.accounts import api_keys
    from campaigns.archive import feed_mailings, issues
    from campaigns.composing import starters
    from campaigns.models import (
        AdminUser,
        Automation,
        AutomationStep,
        AutomationTrigger,
        CalendarEvent,
        Campaign,
        CampaignKind,
        Contact,
        CouponPool,
        Draw,
        LoyaltyTier,
        PostRun,
        PostRunStatus,
        SignupForm,
        Survey,
        SurveyQuestion,
        Topic,
        WebhookEndpoint,
    )
    from campaigns.notes import service as notes

    with session_factory() as s:
        topic = s.get(Topic, 1)

        def campaign(name: str, kind: str = CampaignKind.NURTURE, **kw) -> Campaign:
            c = Campaign(name=name, kind=kind, subject=f"{name} subject", from_name="Mara Klein",
                         from_email="mara@shop.test", mjml=MJML, **kw)
            c.topics = [topic]
            s.add(c)
            s.flush()
            return c

        tx = campaign("Order receipt (transactional)", CampaignKind.TRANSACTIONAL)
        tx.topics = []
        invitation = campaign("Rose workshop (invitation)")
        survey_mail = campaign("How was your order? (survey)")
        abtest_mail = campaign("Winter offer (A/B test)", CampaignKind.MARKETING)
        card = campaign("Thank-you card (post)")
        greeting = campaign("Birthday greeting (automation template)", all_contacts=True)
        greeting.topics = []
        report = starters.starter("blog_report")
        feed_template = campaign("Blog report (feed template)")
        feed_template.subject, feed_template.mjml = report.subject, report.mjml

        pool = CouponPool(name="Autumn thank-you 15%", value_description="15% off", expires_on=now.date()
                          + dt.timedelta(days=45))
        survey = Survey(name="How was your order?", intro="Two questions.", thanks="Thank you!", questions=[
            SurveyQuestion(position=0, kind="rating", prompt="How happy are you?"),
            SurveyQuestion(position=1, kind="text", prompt="Anything we could do better?")])
        event = CalendarEvent(title="Rose workshop", starts_at=now + dt.timedelta(days=10), zone="Europe/Berlin",
                              capacity=0, place="Rose garden", campaign_id=invitation.id)
        draw = Draw(public_id="bench-draw", name="Spring raised-bed draw", prize="A raised bed", rules="One entry.",
                    opens_at=now - dt.timedelta(days=20), closes_at=now + dt.timedelta(days=10), seed="00" * 32,
                    seed_hash=hashlib.sha256(bytes(32)).hexdigest())
        endpoint = WebhookEndpoint(url="https://crm.shop.test/hooks", description="CRM", secret="whsec_bench",
                                   event_types=["contact.unsubscribed", "email.clicked"], enabled=True,
                                   consecutive_failures=0, disabled_reason="", created_by="bench@shop.test")
        form = SignupForm(public_id="bench-form", name="Website footer", title="Our newsletter",
                          consent_text="I would like the newsletter.", topics=[topic])
        run = PostRun(campaign_id=card.id, status=PostRunStatus.DONE, created_by="bench@shop.test",
                      finished_at=now - dt.timedelta(days=3))
        automation = Automation(name="Birthday greeting", trigger=AutomationTrigger.DATE, date_field="birthday",
                                active=True, activated_at=now,
                                steps=[AutomationStep(position=0, delay_days=0, template_id=greeting.id)])
        s.add_all([pool, survey, event, draw, endpoint, form, run, automation,
                   LoyaltyTier(name="Silver", rank=1, min_value=200), LoyaltyTier(name="Gold", rank=2, min_value=500)])
        s.flush()
        survey_mail.survey_id = survey.id
        feed = feed_mailings.save_mailing(s, {"name": "Our blog, monthly", "feed_url": "https://blog.shop.test/feed",
                                              "template_id": feed_template.id, "every_hours": "720",
                                              "max_items": "5"})
        abtest_setup.save(s, abtest_mail, {"subject_1": "A second subject", "test_percent": "20",
                                           "criterion": "human_clicks", "wait_hours": "4"})
        issues.set_archived(s, settings, s.get(Campaign, BIG_CAMPAIGN), topic.id)
        admin = s.scalar(select(AdminUser).order_by(AdminUser.id))
        note = notes.add_note(s, 5, admin, "Prefers the shop in Mitte; asked about rose courses.", pinned=True)
        notes.add_note(s, 5, admin, "Called about a late delivery.")
        api_keys.create_key(s, "Shop", ["orders:write"])
        first_contact = s.scalar(select(Contact.id).order_by(Contact.id))
        ids = {"tx": tx.id, "invitation": invitation.id, "survey_mail": survey_mail.id, "abtest": abtest_mail.id,
               "card": card.id, "pool": pool.id, "survey": survey.id, "event": event.id, "draw": draw.id,
               "endpoint": endpoint.id, "form": form.id, "run": run.id, "feed": feed.id, "note": note.id,
               "automation": automation.id, "first_contact": first_contact,
               "questions": [q.id for q in survey.questions]}
        s.commit()
    return ids


def _children(engine, n: int, now: dt.datetime, ids: dict[str, Any]) -> None:
    """The big lists, bulk-loaded: per_million rows of each, over contacts of the big campaign's audience."""
    from campaigns.models import (
        AuditEntry,
        CouponCode,
        DrawEntry,
        EventReply,
        PostLetter,
        Reply,
        Signup,
        SurveyAnswer,
        TierChange,
        TxMessage,
        WebhookDelivery,
        WebhookEvent,
    )

    def people(count: int, offset: int = 0) -> Iterator[tuple[int, int]]:
        """(k, contact id) for count rows, spread over the list; contact ids are those of the big audience."""
        step = max(1, n // count)
        k = 0
        for i in range(1 + offset % step, n + 1, step):
            if i % 10 == 0:
                continue
            yield k, i
            k += 1
            if k == count:
                return

    def ago(k: int, days: int) -> dt.datetime:
        return now - dt.timedelta(seconds=(k * 7919) % (days * 86400))

    statuses = ("open", "open", "answered", "archived")
    bulk(engine, Reply, ({"contact_id": i, "campaign_id": BIG_CAMPAIGN, "send_id": i, "matched_by": "token",
                          "auto": k % 17 == 0, "status": "archived" if k % 17 == 0 else statuses[k % 4],
                          "from_name": f"Reader {i}", "from_email": f"user{i}@example.test",
                          "subject": "Re: Spring newsletter", "text": f"Thank you! Question {k} about roses.",
                          "original_text": f"Thank you! Question {k} about roses.\n\n> quoted",
                          "received_at": ago(k, 60), "dedupe_key": f"bench-{k}"}
                         for k, i in people(per_million(n, 50_000))))
    tx_statuses = ("sent",) * 17 + ("failed", "suppressed", "bounced")
    bulk(engine, TxMessage, ({"public_id": f"tx_bench{k:08d}", "campaign_id": ids["tx"], "contact_id": i,
                              "email": f"user{i}@example.test", "variables": {"order": f"A-{k}"},
                              "attachments": [], "status": tx_statuses[k % 20], "attempts": 1, "smtp_code": 250,
                              "subject": "Your receipt", "created_at": ago(k, 90), "updated_at": ago(k, 90),
                              "sent_at": ago(k, 90)}
                             for k, i in people(per_million(n, 200_000))))
    clickers = list(people(per_million(n, 100_000)))
    events = len(clickers)
    bulk(engine, WebhookEvent, ({"id": k + 1, "type": "email.clicked", "machine": False, "routed": True,
                                 "body": json.dumps({"type": "email.clicked", "contact_id": i}),
                                 "created_at": ago(k, 30)} for k, i in clickers))
    bulk(engine, WebhookDelivery, ({"endpoint_id": ids["endpoint"], "event_id": k + 1,
                                    "status": "failed" if k % 50 == 0 else "delivered", "attempts": 1,
                                    "retry_until": ago(k, 30) + dt.timedelta(days=1), "last_status": 200,
                                    "last_attempt_at": ago(k, 30), "delivered_at": ago(k, 30),
                                    "created_at": ago(k, 30)} for k in range(events)))
    bulk(engine, DrawEntry, ({"draw_id": ids["draw"], "contact_id": i, "ref": f"r{k:010d}",
                              "source": "mail", "entered_at": ago(k, 20)} for k, i in people(per_million(n, 50_000))))
    answers = ("yes", "no", "maybe", "yes")
    bulk(engine, EventReply, ({"event_id": ids["event"], "contact_id": i, "send_id": i, "answer": answers[k % 4],
                               "answered_at": ago(k, 5)} for k, i in people(per_million(n, 20_000))))
    codes = per_million(n, 100_000)
    bulk(engine, CouponCode, ({"pool_id": ids["pool"], "code": f"GT-{k:08d}",
                               **({"campaign_id": BIG_CAMPAIGN, "contact_id": k + 1, "send_id": k + 1,
                                   "assigned_at": ago(k, 10)} if k % 3 == 0 and (k + 1) % 10 else {}),
                               "created_at": now - dt.timedelta(days=11)} for k in range(codes)))
    qs = ids["questions"]
    bulk(engine, SurveyAnswer, ({"survey_id": ids["survey"], "question_id": qs[k % 2], "position": k % 2,
                                 "contact_id": i, "campaign_id": ids["survey_mail"], "send_id": i,
                                 "value": str(1 + k % 5) if k % 2 == 0 else f"More about roses ({k})",
                                 "answered_at": ago(k, 30)}
                                for k, i in people(per_million(n, 20_000))))
    bulk(engine, Signup, ({"form_id": ids["form"], "contact_id": i, "status": "confirmed" if k % 5 else "expired",
                           "consent_text": "I would like the newsletter.", "consent_version": 1,
                           "requested_at": ago(k, 365), "expires_at": ago(k, 365) + dt.timedelta(days=7),
                           "confirmed_at": ago(k, 365) if k % 5 else None}
                          for k, i in people(per_million(n, 20_000))))
    bulk(engine, PostLetter, ({"run_id": ids["run"], "contact_id": i, "page": k + 1, "sent_at": now
                               - dt.timedelta(days=3)} for k, i in people(per_million(n, 10_000))))
    actions = ("campaign.start", "contact.update", "segment.save", "login")
    bulk(engine, AuditEntry, ({"at": ago(k, 365), "actor": "bench@shop.test", "action": actions[k % 4],
                               "target": f"campaign {k % 300 + 1}", "detail": "", "ip": "127.0.0.1"}
                              for k in range(per_million(n, 100_000))))
    bulk(engine, TierChange, ({"contact_id": i, "from_tier": "", "to_tier": "Silver", "rank_from": 0, "rank_to": 1,
                               "changed_at": ago(k, 365)} for k, i in people(per_million(n, 50_000))))
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT setval(pg_get_serial_sequence('webhook_event', 'id'), "
                              "(SELECT max(id) FROM webhook_event))"))


def lookup(session) -> dict[str, Any]:
    """Ids of the feature objects by the URL parameter names of the pages that show them (bench/admin_pages.py)."""
    from campaigns.models import (
        AbTest,
        Automation,
        CalendarEvent,
        CouponCode,
        CouponPool,
        Draw,
        FeedMailing,
        Note,
        PostRun,
        Reply,
        SignupForm,
        Survey,
        WebhookEndpoint,
    )

    def first(column, *where):
        return session.scalar(select(column).where(*where).order_by(column).limit(1))

    return {
        "abtest_campaign": first(AbTest.campaign_id), "variant": 1,
        "post_campaign": first(PostRun.campaign_id), "run_id": first(PostRun.id),
        "automation_id": first(Automation.id), "event_id": first(CalendarEvent.id),
        "pool_id": first(CouponPool.id), "coupon_code": first(CouponCode.code, CouponCode.assigned_at.is_not(None)),
        "draw_id": first(Draw.id), "mailing_id": first(FeedMailing.id), "form_id": first(SignupForm.id),
        "survey_id": first(Survey.id), "endpoint_id": first(WebhookEndpoint.id),
        "reply_id": first(Reply.id, Reply.auto.is_(False)),
        "note_id": first(Note.id, Note.contact_id == 5), "contact_id": 5,
    }
