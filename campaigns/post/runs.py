"""Print runs: start one for a campaign (checked up front), then the background job that chooses the recipients,
records each letter and writes the print file, the label sheet and the mailing-house CSV to storage.

A campaign goes out either by mail or by post: the run marks it finished ("sent as post") in the same transaction
that records the letters, so it can no longer be started as mail, and the sweeper never sees it. The job works in
steps with its own sessions: choosing and recording commit together (a crash before leaves nothing; after, the
job re-renders from the recorded letters), then the PDF is rendered with progress written every 50 pages.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import Template
from jinja2 import TemplateError as JinjaTemplateError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from campaigns import queueing, recipient_urls, storage
from campaigns.composing import editor
from campaigns.contacts.records import personalization
from campaigns.coupons import assignment, pools
from campaigns.csvfiles import SafeWriter
from campaigns.errors import InvalidState, NotFound, RapportError, ValidationError
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Contact,
    ContactInterest,
    CouponPool,
    LabelSheet,
    PostLayout,
    PostLetter,
    PostRun,
    PostRunStatus,
    utcnow,
)
from campaigns.post import render, selection
from campaigns.post.addresses import address_lines
from campaigns.queueing import Job
from campaigns.runtime import Runtime
from campaigns.sending import policy as policy_service
from mailer.compose import html_to_text, mjml_to_html
from mailer.personalize import text_env
from mailer.tracking import Purpose

logger = logging.getLogger(__name__)

ACTIVE = (PostRunStatus.QUEUED, PostRunStatus.RENDERING, PostRunStatus.DONE)
FILES = {"letters": ("letters.pdf", "application/pdf"), "labels": ("labels.pdf", "application/pdf"),
         "csv": ("addresses.csv", "text/csv")}
PAGE_CHUNK = 200
_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)


def file_key(run_id: int, which: str) -> str:
    """The storage key of a run's file (letters, labels or csv)."""
    return f"post/{run_id}/{FILES[which][0]}"


def letter_template(campaign: Campaign) -> Template:
    """The letter's text: the campaign's plain-text part, else its mail's text without the mail footer."""
    source = campaign.text_body or html_to_text(mjml_to_html(campaign.mjml))
    try:
        return text_env().from_string(source)
    except JinjaTemplateError as exc:
        raise ValidationError(f"the campaign's text cannot be printed: {exc}") from None


def _return_lines(raw: str) -> list[str]:
    lines = [" ".join(line.split()) for line in raw.replace(",", "\n").splitlines()]
    lines = [line for line in lines if line]
    if len(lines) > 5 or any(len(line) > 80 for line in lines):
        raise ValidationError("the return address has at most 5 lines of 80 characters", field="return_address")
    return lines


def create_run(session: Session, campaign: Campaign, data: Mapping[str, Any], *, created_by: str) -> PostRun:
    """Check that the campaign can be printed and add its run (flushed; the caller commits, then calls enqueue)."""
    if campaign.status != CampaignStatus.DRAFT:
        raise InvalidState(f"a {campaign.status} campaign cannot be sent as post; print a draft")
    if session.scalar(select(func.count()).select_from(PostRun).where(
            PostRun.campaign_id == campaign.id, PostRun.status.in_(ACTIVE))):
        raise InvalidState("this campaign is already being printed")
    if not campaign.all_contacts and not campaign.topics and campaign.segment_id is None:
        raise ValidationError("choose at least one topic or a segment, or all subscribed contacts", field="topics")
    try:
        layout, sheet = PostLayout(str(data.get("layout", ""))), LabelSheet(str(data.get("label_sheet", "")))
    except ValueError:
        raise ValidationError("choose a page layout and a label sheet", field="layout") from None
    qr_url = str(data.get("qr_url", "") or "").strip()
    if qr_url and (len(qr_url) > 500 or not _URL.fullmatch(qr_url)):
        raise ValidationError("the QR link must be a web address (http or https)", field="qr_url")
    return_address = "\n".join(_return_lines(str(data.get("return_address", "") or "")))
    letter_template(campaign)
    counts = selection.eligibility(session, campaign)
    if not counts.eligible:
        raise ValidationError("no contact of this campaign's audience has a complete postal address and takes post")
    if campaign.coupon_pool_id:
        pool = session.get(CouponPool, campaign.coupon_pool_id)
        if pool is not None and pool.expired:
            raise ValidationError(f"the coupons of pool {pool.name} expired on {pool.expires_on}")
        free = pools.free_count(session, campaign.coupon_pool_id)
        if free < counts.eligible:
            raise ValidationError(f"the coupon pool has {free} free codes for {counts.eligible} letters")
    run = PostRun(campaign_id=campaign.id, layout=layout, label_sheet=sheet, return_address=return_address,
                  qr_url=qr_url, status=PostRunStatus.QUEUED, created_by=created_by[:320])
    session.add(run)
    session.flush()
    return run


def enqueue(rt: Runtime, run_id: int) -> None:
    """Queue the print job of a committed run."""
    queueing.enqueue(rt.queue, Job.RENDER_POST, run_id, description=f"print run {run_id}")


def retry(session: Session, run: PostRun) -> None:
    """Put a failed run back in the queue's hands (flushed; the caller commits, then calls enqueue)."""
    if run.status != PostRunStatus.FAILED:
        raise InvalidState(f"a {run.status} print run cannot be tried again")
    campaign = session.get(Campaign, run.campaign_id)
    chosen = campaign is not None and campaign.status_reason == _sent_as_post(run)
    run.status = PostRunStatus.RENDERING if chosen else PostRunStatus.QUEUED
    run.error, run.finished_at = "", None
    session.flush()


def get_run(session: Session, run_id: int) -> PostRun:
    run = session.get(PostRun, run_id)
    if run is None:
        raise NotFound(f"print run {run_id} not found")
    return run


# ------------------------------------------------------------------ the job

def run(rt: Runtime, run_id: int) -> dict[str, int]:
    """Choose and record the letters (unless an earlier attempt did), then write the run's three files."""
    try:
        with rt.session_factory() as session:
            # Locked until commit: a second copy of the job waits here, then finds the letters already chosen.
            run = session.get(PostRun, run_id, with_for_update=True)
            if run is None:
                raise NotFound(f"print run {run_id} not found")
            if run.status == PostRunStatus.DONE:
                return {"letters": run.letters}
            if run.status == PostRunStatus.FAILED:     # tried again from its page (retry), never by itself
                return {"letters": 0}
            if run.status == PostRunStatus.QUEUED:
                _choose_and_record(rt, session, run)
            session.commit()
        _write_files(rt, run_id)
    except (RapportError, JinjaTemplateError) as exc:     # the marketer's to fix: the run says what
        _fail(rt, run_id, str(exc))
        return {"letters": 0}
    except Exception as exc:
        _fail(rt, run_id, f"the print run stopped: {exc.__class__.__name__}")
        raise
    with rt.session_factory() as session:
        run = get_run(session, run_id)
        return {"letters": run.letters, "held": run.held, "no_address": run.no_address, "no_post": run.no_post}


def _fail(rt: Runtime, run_id: int, message: str) -> None:
    logger.warning("print run %s failed: %s", run_id, message)
    with rt.session_factory() as session:
        session.execute(update(PostRun).where(PostRun.id == run_id).values(
            status=PostRunStatus.FAILED, error=message[:2000], finished_at=utcnow()))
        session.commit()


def _choose_and_record(rt: Runtime, session: Session, run: PostRun) -> None:
    """One transaction: send rows through the policy, coupon codes, letters and events, the campaign finished."""
    campaign = session.get(Campaign, run.campaign_id)
    if campaign is None or campaign.status != CampaignStatus.DRAFT:
        raise InvalidState("the campaign is no longer a draft (was it sent by mail meanwhile?)")
    now = utcnow()
    counts = selection.eligibility(session, campaign)
    chosen = selection.choose(session, campaign, policy_service.load(session, rt.settings.policy), now)
    codes: dict[int, str] = {}
    if campaign.coupon_pool_id and chosen.send_of:
        # The codes are flushed with the letters and committed with them below, as the mail path does.
        codes, missing = assignment.assign_codes(session, campaign.coupon_pool_id, campaign.id,
                                            [(sid, cid) for cid, sid in chosen.send_of.items()])
        if missing:
            run.error = f"{len(missing)} letters have no coupon code: the pool ran out"
    letters = selection.record_letters(session, run, campaign, chosen, codes, now)
    run.letters, run.held = letters, chosen.held
    run.no_address, run.no_post = counts.no_address, counts.no_post
    run.status = PostRunStatus.RENDERING
    campaign.status, campaign.status_reason = CampaignStatus.FINISHED, _sent_as_post(run)
    campaign.started_at = campaign.dispatched_at = campaign.finished_at = now
    campaign.recipients, campaign.sent, campaign.skipped = letters + chosen.held, letters, chosen.held
    logger.info("print run %s: %d letters, %d held by the policy", run.id, letters, chosen.held)


def _sent_as_post(run: PostRun) -> str:
    """The campaign's status reason once a run recorded its letters: also how a retry knows they were chosen."""
    return f"sent as post (print run {run.id})"


def _date(campaign: Campaign, layout: PostLayout) -> str:
    today = utcnow().date()
    if layout == PostLayout.US10:
        return f"{today:%B} {today.day}, {today.year}"
    if (campaign.language or "").lower().startswith("de"):
        return f"{today:%d.%m.%Y}"
    return f"{today.day} {today:%B %Y}"


def _letters(rt: Runtime, run_id: int) -> Iterator[tuple[render.Letter, Contact]]:
    """The run's letters in page order, read in chunks with short transactions (the progress writer needs the
    database between them)."""
    with rt.session_factory() as session:
        run = get_run(session, run_id)
        campaign = session.get(Campaign, run.campaign_id)
        template = letter_template(campaign)
        subject = text_env().from_string(campaign.subject)
        pool = session.get(CouponPool, campaign.coupon_pool_id) if campaign.coupon_pool_id else None
        name, email = editor.from_identity(campaign, rt.settings)
        sender = editor.sender_context(name, email, editor.postal_address(session, rt.settings))
        layout, qr_url, date, campaign_id = run.layout, run.qr_url, _date(campaign, run.layout), campaign.id
        session.commit()
    geometry = render.LAYOUTS[PostLayout(layout)]
    base, seal = rt.settings.base_url, rt.tokens.seal
    after = 0
    while True:
        with rt.session_factory() as session:
            rows = session.execute(select(PostLetter, Contact).join(Contact, Contact.id == PostLetter.contact_id)
                                   .where(PostLetter.run_id == run_id, PostLetter.page > after)
                                   .order_by(PostLetter.page).limit(PAGE_CHUNK)).all()
            interests: dict[int, list[str]] = {}
            for cid, interest in session.execute(select(ContactInterest.contact_id, ContactInterest.interest).where(
                    ContactInterest.contact_id.in_([c.id for _l, c in rows]))):
                interests.setdefault(cid, []).append(interest)
            session.expunge_all()
            session.commit()
        if not rows:
            return
        for letter, contact in rows:
            coupon = pools.coupon_vars(pool, letter.coupon_code) if pool and letter.coupon_code else {}
            ctx = {"contact": personalization(contact, interests.get(contact.id, [])), "sender": sender,
                   "coupon": coupon,
                   "unsubscribe_url": recipient_urls.url(base, Purpose.UNSUBSCRIBE,
                                                         seal(Purpose.UNSUBSCRIBE, contact.id, campaign_id)),
                   "preferences_url": recipient_urls.url(base, Purpose.PREFERENCES,
                                                         seal(Purpose.PREFERENCES, contact.id))}
            body = template.render(ctx)
            if qr_url:
                target = qr_url.replace("{code}", letter.coupon_code)
                caption = "Redeem your code" if letter.coupon_code else "Scan me"
            else:
                target, caption = f"{base}/m/{seal(Purpose.WEB, letter.send_id)}", "Read it online"
            yield render.Letter(
                contact_id=contact.id, address=address_lines(contact, geometry.home_country),
                subject=" ".join(subject.render(ctx).split()), body=body, date=date, coupon_code=letter.coupon_code,
                coupon_text=f"{coupon['value']}, valid until {coupon['expires']}" if coupon else "",
                qr_url=target, qr_caption=caption), contact
        after = rows[-1][0].page


def _progress(rt: Runtime, run_id: int):
    def write(done: int) -> None:
        with rt.session_factory() as session:
            session.execute(update(PostRun).where(PostRun.id == run_id).values(rendered=done))
            session.commit()
    return write


def _write_files(rt: Runtime, run_id: int) -> None:
    """Render the print file with progress, then the labels and the CSV, and mark the run done."""
    with rt.session_factory() as session:
        run = get_run(session, run_id)
        layout, sheet = PostLayout(run.layout), LabelSheet(run.label_sheet)
        return_lines = run.return_address.splitlines()
        session.commit()
    home = render.LAYOUTS[layout].home_country
    rows: list[tuple[render.Letter, Contact]] = []

    def letters() -> Iterator[render.Letter]:
        for letter, contact in _letters(rt, run_id):
            rows.append((letter, contact))
            yield letter

    store = storage.for_settings(rt.settings)
    pdf = render.letters_pdf(letters(), layout, return_lines, progress=_progress(rt, run_id))
    with store.create(file_key(run_id, "letters")) as out:
        out.write(pdf)
    with store.create(file_key(run_id, "labels")) as out:
        out.write(render.labels_pdf((letter.address for letter, _c in rows), sheet))
    with store.create(file_key(run_id, "csv")) as out:
        out.write(_csv(rows, home).encode("utf-8-sig"))
    with rt.session_factory() as session:
        session.execute(update(PostRun).where(PostRun.id == run_id).values(
            status=PostRunStatus.DONE, rendered=len(rows), finished_at=utcnow()))
        session.commit()
    logger.info("print run %s: %d pages written", run_id, len(rows))


CSV_HEADER = ("page", "contact_id", "name", "address_line1", "address_line2", "postal_code", "city", "region",
              "country", "address_block", "coupon_code", "qr_url")


def _csv(rows: list[tuple[render.Letter, Contact]], home_country: str) -> str:
    """The mailing house's list: one row per page, the fields and the block exactly as printed."""
    text = io.StringIO()
    writer = SafeWriter(text)
    writer.writerow(CSV_HEADER)
    for page, (letter, c) in enumerate(rows, start=1):
        writer.writerow((page, c.id, c.full_name, c.address_line1, c.address_line2, c.postal_code, c.city, c.region,
                         c.country.upper(), " | ".join(address_lines(c, home_country)), letter.coupon_code,
                         letter.qr_url))
    return text.getvalue()
