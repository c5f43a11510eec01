"""Starter templates: the starting points the composer offers for a new campaign (campaigns/starters/*.mjml)."""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.resources import starters_dir

STARTER_DIR = starters_dir()
BLANK_MJML = """<mjml>
  <mj-head>
    <mj-attributes>
      <mj-all font-family="Helvetica, Arial, sans-serif" />
      <mj-text font-size="16px" line-height="24px" color="#1f2937" />
    </mj-attributes>
  </mj-head>
  <mj-body background-color="#f3f4f6">
    <mj-section background-color="#ffffff" padding="32px 24px">
      <mj-column>
        <mj-text font-size="24px" font-weight="700">Hello {{ contact.first_name|default("there", true) }},</mj-text>
        <mj-text>Write your message here.</mj-text>
        <mj-text>{{ sender.name }}</mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""


@dataclass(frozen=True)
class Starter:
    """A starting point for a new campaign."""

    key: str
    title: str
    description: str
    kind: str
    subject: str
    preheader: str = ""

    @property
    def mjml(self) -> str:
        if self.key == "blank":
            return BLANK_MJML
        return (STARTER_DIR / f"{self.key}.mjml").read_text(encoding="utf-8")


_STARTERS = (
    Starter("blank", "Blank", "A plain, single-column layout to write from scratch.", "nurture", ""),
    Starter("newsletter", "Newsletter", "Monthly notes: a hero, three short articles and an event.", "nurture",
            "{{ contact.first_name|default('Hello', true) }}, what's new this month",
            "What to sow now, a soil test and a workshop"),
    Starter("coupon", "Coupon", "A thank-you with each recipient's own code from a coupon pool (choose the pool "
            "below) and one clear button.", "marketing", "A thank-you: {{ coupon.value }}",
            "Your personal code, valid until {{ coupon.expires }}"),
    Starter("event", "Event invitation", "Date, place, agenda and a reply button; calendar-friendly details.",
            "nurture", "{{ contact.first_name|default('Friend', true) }}, you're invited: a spring planting evening",
            "Thursday 18:30 in the shop, free, places limited"),
    Starter("survey", "Survey", "The first question of a survey (choose it below), answered with a single click; "
            "the page it opens has the rest.", "nurture",
            "Quick question, {{ contact.first_name|default('friend', true) }}: how are we doing?",
            "One click, no form"),
    Starter("holiday", "Holiday greeting", "Warm seasonal wishes from the team, opening hours, no selling.",
            "nurture", "Season's greetings from all of us", "Thank you for a wonderful year"),
    Starter("birthday", "Birthday greeting", "A warm birthday note with a small present code (for a birthday "
            "automation; draws a coupon pool).", "nurture",
            "Happy birthday, {{ contact.first_name|default('friend', true) }}!", "A small present from all of us"),
    Starter("order_thanks", "Thank you for your order", "A transactional thank-you right after an order (for a "
            "post-purchase automation).", "transactional", "Thank you for your order",
            "We are getting it ready"),
    Starter("order_survey", "How did it go?", "A follow-up a few days after an order with a one-click survey "
            "(choose the survey below).", "nurture",
            "{{ contact.first_name|default('Hello', true) }}, how did your order go?", "One click, no form"),
    Starter("order_review", "Leave a review", "A review request some weeks after an order; point the button at "
            "your review page.", "nurture", "Would you review your order?", "Two minutes that help others choose"),
    Starter("blog_report", "Blog activity report", "The new articles of your blog's RSS/Atom feed, each with its "
            "summary and a link (for a feed mailing: Campaigns → Feed mailings).", "nurture",
            "New on our blog: {{ feed_items[0].title if feed_items else 'our latest articles' }}",
            "Our latest articles, with a short summary of each"),
    Starter("details", "Is this still right?", "Shows the address, phone, birthday and interests you have and "
            "links to the page where the contact updates them (for a yearly or cadence automation).", "nurture",
            "{{ contact.first_name|default('Hello', true) }}, is this still right?",
            "Two minutes to keep your address and birthday current"),
    Starter("receipt", "Order receipt", "A transactional receipt for the API (POST /api/v1/tx): order number, items "
            "and total from the shop's variables, the invoice attached.", "transactional",
            "Your order {{ order_number }}", "Thank you, we are packing it now"),
)
# Starters used by one feature only, not offered in the composer's chooser (the personal apology mail, the digest).
_FEATURE_STARTERS = frozenset({"apology", "digest"})


def starters() -> list[Starter]:
    """The starter templates: the known ones in order, then any other .mjml file in campaigns/starters/."""
    known = [s for s in _STARTERS if s.key == "blank" or (STARTER_DIR / f"{s.key}.mjml").exists()]
    keys = {s.key for s in known}
    for path in sorted(STARTER_DIR.glob("*.mjml")):
        if path.stem not in keys and path.stem not in _FEATURE_STARTERS:
            known.append(Starter(path.stem, path.stem.replace("_", " ").replace("-", " ").capitalize(), "",
                                 "nurture", ""))
    return known


def starter(key: str) -> Starter | None:
    """One starter by key, or None."""
    return next((s for s in starters() if s.key == key), None)
