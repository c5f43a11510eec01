"""Template resource limits: huge values, long loops and CPU burners fail fast with a clear error naming the line,
at compile time nothing large is computed, and ordinary templates render as before."""

from __future__ import annotations

import tracemalloc

import pytest

from mailer.compose import CampaignSource, TemplateError, compile_campaign
from mailer.personalize import html_env, text_env
from mailer.sandbox import LimitExceeded, render_budget

MJML = """<mjml><mj-body>
<mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}</mj-text>
<mj-text>{{ BAD }}</mj-text>
</mj-column></mj-section>
</mj-body></mjml>"""

CTX = {"contact": {"first_name": "Ada", "items": ["a", "b"]}, "sender": {"postal_address": "Berlin"},
       "unsubscribe_url": "#u", "preferences_url": "#p"}

ATTACKS = [
    ("'a' * 10**9", "1,000,000,000 characters"),
    ("'a' * 1000000000", "1,000,000,000 characters"),
    ("[0] * 10**8", "100,000,000 items"),
    ("'%*s'|format(10**8, 'a')", "width or precision of 100,000,000"),
    ("'%.100000000f'|format(1.5)", "width or precision"),
    ("'{:>100000000}'.format('a')", "width or precision of 100,000,000"),
    ("'{:{w}}'.format('a', w=9)", "computed widths"),
    ("'a'|center(10**9)", "width or precision"),
    ("'a'.ljust(10**9)", "width or precision"),
    ("'a'|indent(10**9)", "width or precision"),
    ("'abc'|replace('', 'y' * 1000000)", "characters"),
    ("'x'.join(['a' * 1000000] * 3)", "characters"),
    ("range(100000)|join('x' * 100000)", "characters"),
    ("range(10)|batch(10**9, 0)|list", "items"),
    ("(7 ** 100000)", "bits"),
    ("(2 ** 3000) * (2 ** 3000)", "bits"),
    ("('a' * 1000000) ~ ('a' * 1000000) ~ 'b'", "characters"),
    ("('a' * 1000000) + ('a' * 1000000) + 'b'", "characters"),
]


def render_subject(expr: str) -> str:
    compiled = compile_campaign(CampaignSource(mjml=MJML.replace("{{ BAD }}", ""), subject="{{ " + expr + " }}"))
    return compiled.render(CTX, lambda i: "#", "").subject


@pytest.mark.parametrize(("expr", "message"), ATTACKS)
def test_huge_values_fail_before_they_are_made(expr: str, message: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError, match=message) as info:
            render_subject(expr)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.message.startswith("subject: ")
    assert peak < 64 * 2**20, f"{expr} allocated {peak / 2**20:.0f} MB"


def test_constant_folding_computes_nothing_large_at_compile_time() -> None:
    tracemalloc.start()
    try:
        for expr, _message in ATTACKS:
            text_env().from_string("{{ " + expr + " }}")        # compiles: the work is left to the render
            html_env().from_string("<p>{{ " + expr + " }}</p>")
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


@pytest.mark.parametrize(("body", "message"), [
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", "loops ran more than 100,000"),
    ("{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% else %}x{% endif %}{% endmacro %}{{ m(30) }}",
     "ms of CPU time"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "characters"),
    # 1,000 chunks under the size limit, 100 MB together: the block's size fails it, unless allocating that much
    # took longer than the CPU limit on a busy machine (seen in suites under load); either way, named by its line.
    ("{% set x %}{% for i in range(1000) %}{{ 'y' * 100000 }}{% endfor %}{% endset %}", "characters|ms of CPU time"),
    ("{{ _links }}", "LinkURLs value cannot be shown"),
    ("{{ contact.first_name.upper }}", "a function cannot be shown"),
])
def test_body_errors_name_the_editor_line_in_preview_and_in_the_worker_path(body: str, message: str) -> None:
    compiled = compile_campaign(CampaignSource(mjml=MJML.replace("{{ BAD }}", body), subject="Hi"))
    for render in (lambda: compiled.render(CTX, lambda i: "#", ""), lambda: compiled.render_mime(CTX, lambda i: "#",
                                                                                                  "")):
        with pytest.raises(TemplateError, match=message) as info:
            render()
        assert info.value.line == 4, str(info.value)
        assert str(info.value).startswith("line 4: ")


def test_the_limits_hold_per_message_across_its_parts() -> None:
    loop = "{% for i in range(60000) %}{% endfor %}"
    compiled = compile_campaign(CampaignSource(mjml=MJML.replace("{{ BAD }}", ""), subject=loop, text_body=loop))
    with pytest.raises(TemplateError, match="loops ran more than"):
        compiled.render(CTX, lambda i: "#", "")
    env = text_env()
    one = env.from_string(loop)
    one.render()   # each render outside a message budget gets its own
    with render_budget(), pytest.raises(LimitExceeded):
        one.render()
        one.render()


def test_ordinary_templates_render_as_before() -> None:
    body = ("{% for item in contact['items'] %}{{ loop.index }}. {{ item|upper }} {% endfor %}"
            "{{ '%05.1f'|format(3.14159) }} {{ '{:>6}|'.format('x') }} {{ 'ab' * 3 }} {{ 3 * 4 }} {{ 2 ** 10 }} "
            "{{ [1, 2] + [3] }} {{ 'a' ~ 'b' }} {{ 'x'|center(5) }}| {{ ['p', 'q']|join(', ') }} "
            "{{ 'a-b'|replace('-', '+') }} {{ contact.nothing }}{{ {'k': 1} }} {{ range(3)|list }}")
    compiled = compile_campaign(CampaignSource(mjml=MJML.replace("{{ BAD }}", body),
                                               subject="Hi {{ contact.first_name }}"))
    rendered = compiled.render(CTX, lambda i: "#", "")
    assert rendered.subject == "Hi Ada"
    assert ("1. A 2. B 003.1      x| ababab 12 1024 [1, 2, 3] ab   x  | p, q a+b {&#39;k&#39;: 1} [0, 1, 2]"
            in rendered.html)
    subject, text_part, html_part = compiled.render_mime(CTX, lambda i: "#", "")
    assert subject == "Hi Ada" and b"ababab" in html_part
