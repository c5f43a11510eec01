"""Quoted-printable templates decode to exactly what the plain template renders, within RFC 2045 line limits."""

import email
import email.policy
import quopri

from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.compose import CampaignSource, compile_campaign
from mailer.personalize import text_env, wire_env
from mailer.qp import compile_source

# Bare CRs are encoded faithfully (=0D), but next to a line break they cannot be compared once line ends are
# normalized, so generated text leaves them out.
TEXT = st.text(alphabet=st.characters(blacklist_characters="\r", blacklist_categories=("Cs",)), max_size=300)
SOURCE = ('Hi {{ name }}, <a href="{{ url }}">x=1</a>  \n line  \n{%- if flag %} yes {% endif -%}\n'
          + "word " * 40 + "\n{% for i in items %}[{{ i }}]\n{% endfor %}end {{ nothing }}.")


def check(source: str, ctx: dict) -> str:
    plain = text_env().from_string(source).render(ctx)
    wire = wire_env(False).from_string(compile_source(source)).render(ctx)
    lines = wire.split("\r\n")
    assert max(len(line) for line in lines) <= 76
    assert "\n" not in wire.replace("\r\n", "") and wire.isascii()
    # A CRLF is a line break either way; compare with line ends normalized on both sides.
    decoded = quopri.decodestring(wire.encode()).decode("utf-8").replace("\r\n", "\n")
    assert decoded == plain.replace("\r\n", "\n") + "\n"
    return wire


@settings(max_examples=200, deadline=None)
@given(name=TEXT, url=TEXT, flag=st.booleans(), items=st.lists(TEXT, max_size=4))
def test_wire_decodes_to_the_plain_render(name: str, url: str, flag: bool, items: list) -> None:
    check(SOURCE, {"name": name, "url": url, "flag": flag, "items": items, "nothing": None})


@settings(max_examples=100, deadline=None)
@given(static=TEXT)
def test_any_static_text_round_trips(static: str) -> None:
    if "{" in static or "}" in static:
        static = static.replace("{", "(").replace("}", ")")
    check(static + "{{ v }}" + static, {"v": static})


def test_html_values_are_escaped_once() -> None:
    wire = wire_env(True).from_string(compile_source('<p title="{{ v }}">{{ v }}</p>')).render({"v": 'a"<b>&'})
    escaped = "a&#34;&lt;b&gt;&amp;"
    assert quopri.decodestring(wire.encode()).decode().strip() == f'<p title="{escaped}">{escaped}</p>'


def test_campaign_parts_use_qp_for_latin_and_base64_for_mostly_cjk_content() -> None:
    body = "<mjml><mj-body><mj-section><mj-column><mj-text>{}</mj-text></mj-column></mj-section></mj-body></mjml>"
    ctx = {"contact": {"first_name": "Zoë"}, "sender": {"postal_address": "x"}, "unsubscribe_url": "u",
           "preferences_url": "p"}
    latin = compile_campaign(CampaignSource(mjml=body.format("Hello {{ contact.first_name }} " * 30), subject="s"))
    cjk = compile_campaign(CampaignSource(mjml=body.format("こんにちは世界、お元気ですか。" * 200), subject="s"))
    assert latin.html_wire is not None and cjk.html_wire is None
    for compiled in (latin, cjk):
        _subject, text_part, html_part = compiled.render_mime(ctx, lambda i: f"https://t/{i}", "https://t/o")
        part = email.message_from_bytes(html_part, policy=email.policy.default)
        decoded = part.get_content().replace("\r\n", "\n")
        plain = compiled.render(ctx, lambda i: f"https://t/{i}", "https://t/o").html
        assert decoded.rstrip("\n") == plain.rstrip("\n")
    assert b"quoted-printable" in latin.render_mime(ctx, str, "o")[2]
    assert b"base64" in cjk.render_mime(ctx, str, "o")[2]


def test_raw_blocks_fall_back_to_per_message_encoding() -> None:
    body = ("<mjml><mj-body><mj-section><mj-column><mj-text>{% raw %}{{ literal }}{% endraw %}</mj-text>"
            "</mj-column></mj-section></mj-body></mjml>")
    compiled = compile_campaign(CampaignSource(mjml=body, subject="s"))
    assert compiled.html_wire is None
    ctx = {"contact": {}, "sender": {}, "unsubscribe_url": "u", "preferences_url": "p"}
    part = email.message_from_bytes(compiled.render_mime(ctx, str, "o")[2], policy=email.policy.default)
    assert "{{ literal }}" in part.get_content()
