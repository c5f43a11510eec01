"""A realistic 40–50 KB newsletter in MJML with 12+ links and personalization, for benchmarks."""

from __future__ import annotations

TOPICS = [
    ("What to sow this month", "sowing-calendar"), ("The ten-minute soil test", "soil-jar-test"),
    ("Pruning fruit trees", "pruning"), ("Compost that does not smell", "compost"),
    ("Watering: less, but deeper", "watering"), ("Bees on the balcony", "balcony-bees"),
    ("Tomatoes from seed", "tomatoes"),
]
PARA = ("Our gardeners tested this over three seasons in beds of clay, sand and loam, and wrote down what worked "
        "and what did not. Start small, keep notes, and remember that most plants forgive a late start far more "
        "readily than they forgive cold, wet feet. ")


def newsletter_mjml() -> str:
    """MJML whose HTML output is about 45 KB."""
    sections = []
    for title, slug in TOPICS:
        sections.append(f"""
    <mj-section background-color="#ffffff" padding="12px 24px">
      <mj-column width="35%">
        <mj-image src="https://cdn.greenthumb.example/img/{slug}.jpg" alt="{title}" width="180px"
                  href="https://greenthumb.example/guides/{slug}?utm_source=newsletter" />
      </mj-column>
      <mj-column width="65%">
        <mj-text font-size="20px" font-weight="700">{title}</mj-text>
        <mj-text>{PARA}{{% if contact.city %}}Gardeners in {{{{ contact.city }}}} have told us about it
          too.{{% endif %}}</mj-text>
        <mj-button background-color="#15803d" href="https://greenthumb.example/guides/{slug}">Read the guide</mj-button>
      </mj-column>
    </mj-section>""")
    return f"""<mjml>
  <mj-head>
    <mj-title>Notes from the shop</mj-title>
    <mj-attributes><mj-all font-family="Helvetica, Arial, sans-serif" />
      <mj-text font-size="15px" line-height="23px" color="#1f2937" /></mj-attributes>
    <mj-style>.footer a {{ color: #6b7280; }} @media (max-width: 480px) {{ .t {{ font-size: 24px !important; }} }}</mj-style>
  </mj-head>
  <mj-body background-color="#f3f4f6">
    <mj-section background-color="#14532d" padding="20px"><mj-column>
      <mj-text color="#ffffff" align="center">Green Thumb Garden Supply · Monthly notes</mj-text></mj-column></mj-section>
    <mj-section background-color="#ffffff" padding="28px 24px 8px"><mj-column>
      <mj-text css-class="t" font-size="28px" font-weight="700">Hello {{{{ contact.first_name|default("friend", true) }}}},
        the garden is waking up</mj-text>
      <mj-text>Thanks for being part of our community. Your tier: {{{{ contact.customer_tier|default("seedling") }}}}.</mj-text>
    </mj-column></mj-section>
    {"".join(sections)}
    <mj-section padding="16px 0" css-class="footer"><mj-column>
      <mj-text align="center" font-size="12px" color="#6b7280">{{{{ sender.postal_address }}}}<br>
        <a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a> · <a href="{{{{ preferences_url }}}}">Preferences</a></mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>"""
