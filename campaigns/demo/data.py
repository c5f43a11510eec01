"""Demo data for `make demo`: realistic contacts, topics, a named sender, two MJML campaigns, one admin, notes on a
few contacts and a thank-you card printed by post."""

from __future__ import annotations

import datetime as dt
import random
import secrets
import unicodedata
from decimal import Decimal

from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from campaigns.addresses import normalize_email
from campaigns.archive import feed_mailings, issues
from campaigns.automations.runs import set_active
from campaigns.automations.starter import create_post_purchase
from campaigns.composing import starters as starter_service
from campaigns.config import Settings
from campaigns.coupons.codes import ALPHABET
from campaigns.db import make_engine, make_session_factory, session_scope
from campaigns.demo.draws import seed_draw
from campaigns.demo.events import seed_event
from campaigns.demo.loyalty import seed_loyalty
from campaigns.demo.replies import seed_replies
from campaigns.demo.reports import seed_history
from campaigns.models import (
    AdminRole,
    AdminUser,
    Automation,
    AutomationStep,
    AutomationTrigger,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Contact,
    ContactInterest,
    ContactStatus,
    CouponCode,
    CouponPool,
    Event,
    Order,
    PolicyLedger,
    PostLetter,
    PostRun,
    Segment,
    Send,
    Sender,
    SendStatus,
    Subscription,
    Topic,
    utcnow,
)
from campaigns.notes import service as notes
from campaigns.post import runs as post_runs
from campaigns.resources import starters_dir
from campaigns.runtime import Runtime
from campaigns.signup.service import save_form
from campaigns.surveys.service import save_survey

DEMO_EMAIL = "demo@rapport.test"
DEMO_PASSWORD = "rapport-demo"
# The demo's business, named the same on every page and in every mail (unless SENDER_NAME / POSTAL_ADDRESS say else).
DEMO_BUSINESS = "Green Thumb"
DEMO_POSTAL_ADDRESS = "Green Thumb, Lindenstraße 1, 10115 Berlin, Germany"
STARTERS = starters_dir()

FIRST = ["Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hannah", "Ilias", "Jana", "Karim", "Lena",
         "Mateo", "Nora", "Oskar", "Paula", "Quentin", "Rosa", "Samuel", "Tara", "Umut", "Vera", "Wiebke", "Yusuf",
         "Zoë", "Amélie", "Björn", "Chiara", "Dmitri", "Eva", "Finn", "Giulia", "Hugo", "Ines", "Jonas", "Kaja",
         "Luis", "Mira", "Niklas", "Olivia", "Priya", "Rafael", "Sofia", "Theo", "Ursula", "Valentin", "Wen", "Ximena"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
        "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Braun", "Zimmermann", "Krüger",
        "Hartmann", "Lange", "Werner", "Krause", "Lehmann", "Köhler", "Yılmaz", "Kowalski", "Rossi", "García",
        "Dubois", "Nguyen", "O'Brien", "Jensen", "Novak", "Papadopoulos"]
PLACES = [("Berlin", "BE", "10115", "DE", "Europe/Berlin"), ("Hamburg", "HH", "20095", "DE", "Europe/Berlin"),
          ("München", "BY", "80331", "DE", "Europe/Berlin"), ("Köln", "NW", "50667", "DE", "Europe/Berlin"),
          ("Leipzig", "SN", "04109", "DE", "Europe/Berlin"), ("Wien", "W", "1010", "AT", "Europe/Vienna"),
          ("Zürich", "ZH", "8001", "CH", "Europe/Zurich"), ("Amsterdam", "NH", "1012", "NL", "Europe/Amsterdam"),
          ("Lyon", "ARA", "69001", "FR", "Europe/Paris"), ("København", "84", "1050", "DK", "Europe/Copenhagen")]
STREETS = ["Lindenstraße", "Gartenweg", "Am Markt", "Bahnhofstraße", "Rosenallee", "Kastanienweg", "Hauptstraße",
           "Mühlenweg", "Schillerstraße", "Birkenhof"]
INTERESTS = ["vegetables", "roses", "fruit trees", "houseplants", "composting", "balcony gardens", "herbs",
             "bees", "tools", "seeds"]
DOMAINS = ["example.com", "example.net", "example.org"]


# How people with these names spell them in an ASCII address (Müller -> mueller, Zoë -> zoe, Yılmaz -> yilmaz).
TRANSLITERATE = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ı": "i", "ø": "oe", "å": "aa",
                               "æ": "ae", "'": ""})


def ascii_local_part(first: str, last: str) -> str:
    """first.last as an address's local part: German umlauts spelled out, other accents dropped from the letter."""
    text = unicodedata.normalize("NFKD", f"{first}.{last}".lower().translate(TRANSLITERATE))
    return "".join(ch for ch in text if ch.isascii() and (ch.isalnum() or ch == ".")) or "contact"


def _contact(rng: random.Random, i: int, created: dt.datetime) -> Contact:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, region, postal, country, tz = rng.choice(PLACES)
    return Contact(
        email=normalize_email(f"{ascii_local_part(first, last)}{i}@{rng.choice(DOMAINS)}"),
        first_name=first, last_name=last,
        phone=f"+49 {rng.randint(150, 179)} {rng.randint(1000000, 9999999)}",
        address_line1=f"{rng.choice(STREETS)} {rng.randint(1, 120)}", city=city, region=region,
        postal_code=postal, country=country, timezone=tz, locale=rng.choice(["de", "en", "en", "fr"]),
        birthday=dt.date(rng.randint(1950, 2004), rng.randint(1, 12), rng.randint(1, 28)),
        attributes={"customer_tier": rng.choice(["seedling", "sprout", "evergreen"]),
                    "favourite_store": city},
        status=ContactStatus.SUBSCRIBED if rng.random() > 0.06 else ContactStatus.UNSUBSCRIBED,
        consent_source=rng.choice(["checkout", "signup form", "in-store"]), consent_at=created, created_at=created,
    )


def seed(settings: Settings, contacts: int = 300) -> bool:
    """Fill an empty database with demo data; returns False (and changes nothing) when it already has data."""
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            if session.scalar(select(func.count()).select_from(AdminUser)):
                return False
            _seed(session, settings, contacts)
            run_id = _seed_card(session)
        _print_card(settings, run_id)
        return True
    finally:
        engine.dispose()


def _seed(session, settings: Settings, n: int) -> None:
    rng = random.Random(20261123)
    session.add(AdminUser(email=DEMO_EMAIL, name="Demo Marketer", role=AdminRole.ADMIN,
                          password_hash=generate_password_hash(DEMO_PASSWORD)))
    owner = Sender(name="Anna Becker", email=f"anna@{settings.dkim_domain}", title="Customer care")
    session.add(owner)
    topics = [Topic(name="Newsletter", description="Monthly notes: what to sow, events, guides"),
              Topic(name="Tips & guides", description="Short how-tos, now and then"),
              Topic(name="Offers", description="Coupons and sales, rarely")]
    session.add_all(topics)
    session.flush()
    # Joined oldest first, as contacts added over time are: the contacts list's "Newest first" (by id) then agrees
    # with its "Added" column.
    joined = sorted(utcnow() - dt.timedelta(days=rng.randint(5, 900)) for _ in range(n))
    for i in range(1, n + 1):
        contact = _contact(rng, i, joined[i - 1])
        contact.owner = owner if rng.random() < 0.3 else None
        chosen = [t for t in topics if rng.random() < (0.9 if t.name == "Newsletter" else 0.5)] or [topics[0]]
        # Subscribed when they joined (Newsletter) or some time after (the other topics), never after today.
        contact.subscriptions = [Subscription(topic_id=t.id, subscribed=True, updated_at=_joined(rng, contact, t))
                                 for t in chosen]
        contact.interests = [ContactInterest(interest=x) for x in sorted(set(rng.sample(INTERESTS, 2)))]
        contact.orders = [
            Order(ordered_at=min(contact.created_at + dt.timedelta(days=rng.randint(0, 300)),
                                 utcnow() - dt.timedelta(days=1)),   # bought after joining, never after today
                  amount=Decimal(rng.randint(900, 25000)) / 100, reference=f"GT-{rng.randint(10000, 99999)}")
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 5]))]
        session.add(contact)
    newsletter = Campaign(name="March newsletter", kind=CampaignKind.NURTURE,
                          subject="{{ contact.first_name|default('Hello', true) }}, what to sow this month",
                          preheader="Sowing calendar, a ten-minute soil test and a pruning workshop",
                          from_name=owner.name, from_email=settings.sender_email,
                          mjml=(STARTERS / "newsletter.mjml").read_text())
    newsletter.topics = [topics[0]]
    coupon_starter = starter_service.starter("coupon")
    coupon = Campaign(name="Autumn thank-you coupon", kind=CampaignKind.MARKETING, subject=coupon_starter.subject,
                      preheader=coupon_starter.preheader, from_name=settings.sender_name,
                      from_email=settings.sender_email, mjml=coupon_starter.mjml)
    coupon.topics = [topics[2]]
    receipt_starter = starter_service.starter("receipt")
    receipt = Campaign(name="Order receipt (transactional API)", kind=CampaignKind.TRANSACTIONAL,
                       slug="order-receipt", subject=receipt_starter.subject, preheader=receipt_starter.preheader,
                       from_name=settings.sender_name, from_email=settings.sender_email, mjml=receipt_starter.mjml)
    session.add_all([newsletter, coupon, receipt])
    _seed_coupons_and_survey(session, coupon, topics[0], owner, settings)
    _seed_segments(session)
    _seed_signup_form(session, topics)
    _seed_automations(session, owner, settings)
    session.flush()
    seed_loyalty(session, settings)
    seed_history(session, rng, owner, topics[0])   # sent campaigns: reports and dashboard charts
    _seed_notes(session, rng)
    seed_replies(session, settings, rng)
    _seed_archive(session, settings, topics[0])
    seed_draw(session)
    seed_event(session, settings, topics[0])


NOTES = (("Allergic to lilies: never send lilies as a gift.", True),
         ("Daughter Mia starts school in September; asked about child-friendly garden tools.", True),
         ("Called about a late parcel (GT-48213); sent an apology with a coupon.", False),
         ("Prefers peat-free compost, asked twice whether we stock it.", False),
         ("Runs the community garden on Rosenallee; interested in bulk seed orders.", False))


def _seed_notes(session, rng: random.Random) -> None:
    """A few notes by the demo admin, some pinned as key facts, on the first contacts."""
    admin = session.scalar(select(AdminUser).where(AdminUser.email == DEMO_EMAIL))
    contact_ids = list(session.scalars(select(Contact.id).order_by(Contact.id).limit(3)))
    for i, (body, pinned) in enumerate(NOTES):
        note = notes.add_note(session, contact_ids[i % len(contact_ids)], admin, body, pinned=pinned)
        note.created_at = utcnow() - dt.timedelta(days=rng.randint(1, 60), hours=rng.randint(0, 23))
    session.flush()


CARD_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Dear {{ contact.first_name|default('friend', true) }},</mj-text>
<mj-text>thank you for growing with us this year. Spring is on its way to {{ contact.city }}: we saved you a packet
of our own sweet-pea seeds. Come by the shop and pick it up, or scan the code to read our sowing guide.</mj-text>
<mj-text>Happy gardening, {{ sender.name }}</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


def _seed_card(session) -> int:
    """A thank-you card to the loyal customers (a saved segment), as post: its print run (rendered by _print_card).
    The best customers, not a whole topic: a card is a personal touch, and most of the list stays quiet enough for
    the cadence report to show both."""
    card = Campaign(name="Thank-you card (post)", kind=CampaignKind.NURTURE,
                    subject="A little thank-you, {{ contact.first_name|default('friend', true) }}",
                    from_name="Anna Becker", mjml=CARD_MJML)
    card.segment_id = session.scalar(select(Segment.id).where(Segment.name == "Loyal customers"))
    session.add(card)
    session.flush()
    run = post_runs.create_run(session, card, {"layout": "card-a6", "label_sheet": "L7160",
                                               "return_address": "Green Thumb\nLindenstraße 1\n10115 Berlin"},
                               created_by=DEMO_EMAIL)
    return run.id


def _print_card(settings: Settings, run_id: int) -> None:
    """Render the demo card's print run now, so its PDF, labels and CSV are there when the admin opens."""
    rt = Runtime(settings)
    try:
        post_runs.run(rt, run_id)
        with rt.session_factory() as session:
            _backdate_card(session, run_id, dt.timedelta(days=10))
            session.commit()
    finally:
        rt.close()


def _backdate_card(session, run_id: int, ago: dt.timedelta) -> None:
    """Move the card's letters into the past: the demo's mail today is not held by the daily cap for a card.
    Row by row in Python, as SQLite cannot subtract an interval from a stored time."""
    run = session.get(PostRun, run_id)
    campaign = session.get(Campaign, run.campaign_id)
    send_ids = select(Send.id).where(Send.campaign_id == campaign.id)
    contact_ids = select(PostLetter.contact_id).where(PostLetter.run_id == run_id)
    for model, column, where in ((PolicyLedger, "sent_at", PolicyLedger.send_id.in_(send_ids)),
                                 (Send, "sent_at", Send.campaign_id == campaign.id),
                                 (Event, "occurred_at", Event.campaign_id == campaign.id),
                                 (PostLetter, "sent_at", PostLetter.run_id == run_id)):
        for row in session.scalars(select(model).where(where)):
            if getattr(row, column) is not None:
                setattr(row, column, getattr(row, column) - ago)
    session.flush()
    latest = dict(session.execute(select(Send.contact_id, func.max(Send.sent_at)).where(
        Send.contact_id.in_(contact_ids), Send.status == SendStatus.SENT).group_by(Send.contact_id)).all())
    for contact in session.scalars(select(Contact).where(Contact.id.in_(contact_ids))):
        contact.last_sent_at = latest.get(contact.id)
    run.created_at, run.finished_at = run.created_at - ago, run.finished_at - ago
    campaign.started_at = campaign.dispatched_at = campaign.finished_at = campaign.finished_at - ago


def _joined(rng: random.Random, contact: Contact, topic: Topic) -> dt.datetime:
    if topic.name == "Newsletter":
        return contact.created_at
    return min(contact.created_at + dt.timedelta(days=rng.randint(0, 200), hours=rng.randint(0, 23)),
               utcnow() - dt.timedelta(days=1))


def _seed_signup_form(session, topics: list[Topic]) -> None:
    """A double opt-in sign-up form for the newsletter and tips (hosted page and embeddable snippet)."""
    save_form(session, {"name": "Website footer", "title": "Get the Green Thumb newsletter",
                        "intro": "Monthly notes on what to sow, short guides and garden events. No spam, ever.",
                        "consent_text": "I would like to receive the Green Thumb newsletters I ticked above by "
                                        "email. I can unsubscribe at any time with the link in every mail. My "
                                        "address is used for nothing else."},
              [topics[0].id, topics[1].id])


def _seed_segments(session) -> None:
    """Two saved segments a marketer would start from (dynamic: evaluated whenever they are used)."""
    session.add_all([
        Segment(name="Loyal customers", description="Spent 150 or more, or ordered at least three times",
                definition={"match": "any", "rules": [
                    {"field": "lifetime_value", "op": "gte", "value": "150"},
                    {"field": "order_count", "op": "gte", "value": "3"}]}),
        Segment(name="Rose and fruit growers in Germany", description="For the spring pruning workshop",
                definition={"match": "all", "rules": [
                    {"field": "country", "op": "is", "value": "DE"},
                    {"match": "any", "rules": [{"field": "interest", "op": "has", "value": "roses"},
                                               {"field": "interest", "op": "has", "value": "fruit trees"}]}]}),
    ])


def _seed_coupons_and_survey(session, coupon: Campaign, newsletter_topic: Topic, owner: Sender,
                             settings: Settings) -> None:
    """A coupon pool the coupon mailing draws from (one code per recipient), and a survey in a short mailing."""
    pool = CouponPool(name="Autumn thank-you 15%", value_description="15% off your next order",
                      expires_on=dt.date.today() + dt.timedelta(days=45))
    session.add(pool)
    session.flush()
    codes = {"GT-" + "".join(secrets.choice(ALPHABET) for _ in range(8)) for _ in range(400)}
    session.add_all(CouponCode(pool_id=pool.id, code=code) for code in sorted(codes))
    coupon.coupon_pool_id = pool.id     # the coupon starter shows the pool's code, value and expiry
    survey = save_survey(session, {"name": "How was your last order?", "intro": "Four quick questions, one minute.",
                                   "thanks": "Thank you! Anna reads every answer."}, [
        {"prompt": "How happy are you with your last order?", "kind": "rating"},
        {"prompt": "Did everything arrive in good shape?", "kind": "yes_no"},
        {"prompt": "What would you like to hear more about?", "kind": "choice",
         "choices": ["Sowing and planting", "Roses", "Tools", "Events near me"]},
        {"prompt": "Anything we could do better?", "kind": "text"},
    ])
    check_in = Campaign(name="How was your order? (survey)", kind=CampaignKind.NURTURE,
                        subject="{{ contact.first_name|default('Hello', true) }}, one quick question",
                        preheader="One click is enough", from_name=owner.name, from_email=settings.sender_email,
                        survey_id=survey.id, mjml=SURVEY_MJML)
    check_in.topics = [newsletter_topic]
    session.add(check_in)


SURVEY_MJML = """<mjml>
  <mj-body background-color="#f0fdf4">
    <mj-section background-color="#ffffff" padding="28px 24px">
      <mj-column>
        <mj-text font-size="22px" font-weight="700">
          {{ contact.first_name|default("Hello", true) }}, how did we do?</mj-text>
        <mj-text font-size="16px" line-height="24px">You ordered from us recently. One click below tells us how it
          went; the page it opens has three more short questions, if you have a minute.</mj-text>
        <mj-text font-size="16px">{{ survey_block() }}</mj-text>
        <mj-text font-size="14px" color="#6b7280">Thank you, {{ sender.name }}</mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""


def _seed_automations(session, owner: Sender, settings: Settings) -> None:
    """A birthday automation (switched on): a greeting with a small present from its own coupon pool, at 09:00 in
    each contact's time zone. Its template is a draft campaign, editable like any other. And a post-purchase one."""
    pool = CouponPool(name="Birthday present 10%", value_description="10% off one order",
                      expires_on=dt.date.today() + dt.timedelta(days=365))
    session.add(pool)
    session.flush()
    codes = {"BDAY-" + "".join(secrets.choice(ALPHABET) for _ in range(8)) for _ in range(300)}
    session.add_all(CouponCode(pool_id=pool.id, code=code) for code in sorted(codes))
    greeting = Campaign(name="Birthday greeting (automation template)", kind=CampaignKind.NURTURE,
                        subject="Happy birthday, {{ contact.first_name|default('friend', true) }}!",
                        preheader="A small present from all of us", from_name=owner.name,
                        from_email=settings.sender_email, all_contacts=True, coupon_pool_id=pool.id,
                        mjml=(STARTERS / "birthday.mjml").read_text())
    session.add(greeting)
    session.flush()
    session.add(Automation(name="Birthday greeting", trigger=AutomationTrigger.DATE, date_field="birthday",
                           days_before=0, send_minute=9 * 60, active=True, activated_at=utcnow(),
                           steps=[AutomationStep(position=0, delay_days=0, template_id=greeting.id)]))
    # Post-purchase (switched on): a thank-you for every new order, "How did it go?" after 3 days, a review request
    # after 14 — the starter the automations page offers.
    set_active(session, create_post_purchase(session, "https://greenthumb.example/reviews", "After an order"), True)


def _seed_archive(session, settings: Settings, topic: Topic) -> None:
    """The sent newsletters in the topic's public archive (/archive/<id>-newsletter), and a feed mailing (off: the
    demo has no blog) with its "Blog activity report" template."""
    session.flush()
    for campaign in session.scalars(select(Campaign).where(Campaign.status == CampaignStatus.FINISHED,
                                                           Campaign.sent > 0).order_by(Campaign.id)):
        if topic in campaign.topics:
            issues.set_archived(session, settings, campaign, topic.id)
    report = starter_service.starter("blog_report")
    template = Campaign(name="Blog activity report (feed template)", kind=CampaignKind.NURTURE,
                        subject=report.subject, preheader=report.preheader, from_name=settings.sender_name,
                        from_email=settings.sender_email, mjml=report.mjml)
    template.topics = [topic]
    session.add(template)
    session.flush()
    feed_mailings.save_mailing(session, {"name": "Our blog, monthly", "feed_url": "https://blog.example.com/feed.xml",
                                         "template_id": template.id, "every_hours": "720", "max_items": "5"})
