"""Compile once, render per recipient: MJML, CSS inlining, sandbox, links, text part, errors with lines."""

import pytest

from mailer.compose import CampaignSource, TemplateError, compile_campaign, html_to_text

BASE = """<mjml>
<mj-head><mj-style inline="inline">.hl { color: #ff0000; }</mj-style></mj-head>
<mj-body>
<mj-section><mj-column>
<mj-text><p class="hl">Hi {{ contact.first_name }}</p> <a href="https://shop.test/a?x=1&amp;y=2">A</a>
<a href="https://shop.test/b">B</a> <a href="https://shop.test/a?x=1&amp;y=2">A again</a>
<a href="mailto:help@shop.test">mail us</a></mj-text>
</mj-column></mj-section>
</mj-body>
</mjml>"""
CTX = {"contact": {"first_name": "Zoë <script>"}, "sender": {"postal_address": "1 Main St, Berlin"},
       "unsubscribe_url": "https://t/u/TOKEN", "preferences_url": "https://t/p/TOKEN"}


def render(src: CampaignSource, ctx: dict = CTX):
    compiled = compile_campaign(src)
    return compiled, compiled.render(ctx, lambda i: f"https://t/c/{i}", "https://t/o/OPEN")


def test_links_become_tracked_urls_and_css_is_inlined() -> None:
    compiled, out = render(CampaignSource(mjml=BASE, subject="Hi {{ contact.first_name }}"))
    assert compiled.links == ("https://shop.test/a?x=1&y=2", "https://shop.test/b")
    assert out.html.count('href="https://t/c/0"') == 2 and 'href="https://t/c/1"' in out.html
    assert "mailto:help@shop.test" in out.html
    assert "color:#ff0000" in out.html.replace(" ", "")          # premailer inlined the class
    assert 'src="https://t/o/OPEN"' in out.html                   # open pixel
    assert out.subject == "Hi Zoë <script>"                       # subjects are text, not HTML


def test_values_are_html_escaped_in_html_only() -> None:
    _c, out = render(CampaignSource(mjml=BASE, subject="s"))
    assert "Zoë &lt;script&gt;" in out.html and "<script>" not in out.html
    assert "Hi Zoë <script>" in out.text


def test_footer_with_unsubscribe_and_postal_address_is_added_when_missing() -> None:
    _c, out = render(CampaignSource(mjml=BASE, subject="s"))
    assert 'href="https://t/u/TOKEN"' in out.html and "1 Main St, Berlin" in out.html
    assert "https://t/u/TOKEN" in out.text and "1 Main St, Berlin" in out.text


def test_text_part_is_readable() -> None:
    _c, out = render(CampaignSource(mjml=BASE, subject="s", preheader="Hidden preview"))
    assert "A (https://t/c/0)" in out.text
    assert "[if mso" not in out.text and "<" not in out.text.replace("<script>", "")
    assert "Hidden preview" in out.html and "Hidden preview" not in out.text


def test_sandbox_blocks_python_internals() -> None:
    evil = BASE.replace("Hi {{ contact.first_name }}",
                        "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ contact.__class__ }}")
    try:
        _c, out = render(CampaignSource(mjml=evil, subject="s"))
    except TemplateError as exc:
        assert "not allowed" in str(exc) or "unsafe" in str(exc)
    else:
        assert "subclasses" not in out.html and "class" not in out.text.lower()


@pytest.mark.parametrize(("mjml", "line", "words"), [
    ("<mjml>\n<mj-body>\n<mj-section>\n<mj-column>\n<mj-text>x</mj-column>\n</mj-section></mj-body></mjml>",
     5, "mj-text"),
    ("<mjml>\n<mj-body>\n<mj-section>\n</mj-body></mjml>", 4, "mj-section"),
    ("<mjml>\n<mj-body>\n<mj-section><mj-column><mj-text>{{ contact.first_name </mj-text>"
     "</mj-column></mj-section></mj-body></mjml>", 3, "template"),
    ("<html><body>not mjml</body></html>", 1, "<mjml>"),
])
def test_errors_name_the_line(mjml: str, line: int, words: str) -> None:
    with pytest.raises(TemplateError) as info:
        compile_campaign(CampaignSource(mjml=mjml, subject="s"))
    assert info.value.line == line and words in str(info.value)


def test_subject_syntax_error_is_reported() -> None:
    with pytest.raises(TemplateError, match="subject"):
        compile_campaign(CampaignSource(mjml=BASE, subject="Hi {{ oops"))


def test_content_hash_changes_with_content() -> None:
    a = CampaignSource(mjml=BASE, subject="s")
    assert a.content_hash() == CampaignSource(mjml=BASE, subject="s").content_hash()
    assert a.content_hash() != CampaignSource(mjml=BASE, subject="s2").content_hash()


def test_html_to_text_handles_lists_and_breaks() -> None:
    text = html_to_text("<html><body><h1>Title</h1><ul><li>one</li><li>two</li></ul>a<br>b</body></html>")
    assert "Title" in text and "- one" in text and "- two" in text and "a\nb" in text


def test_unknown_filter_is_reported_on_the_marketers_line() -> None:
    from mailer.compose import CampaignSource, TemplateError, compile_campaign

    mjml = "<mjml>\n<mj-body>\n<mj-section>\n<mj-column>\n<mj-text>{{ contact.first_name|shout }}</mj-text>\n" \
           "</mj-column>\n</mj-section>\n</mj-body>\n</mjml>"
    try:
        compile_campaign(CampaignSource(subject="Hi", mjml=mjml))
    except TemplateError as exc:
        assert exc.line == 5 and "shout" in str(exc)
    else:
        raise AssertionError("an unknown filter must be refused")


TINTED = """<mjml><mj-body background-color="#f4f1ea"><mj-section><mj-column>
<mj-text>Our autumn picks are here.</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


def test_preheader_is_hidden_without_a_text_colour_and_stays_out_of_the_text_part() -> None:
    import lxml.html

    _c, out = render(CampaignSource(mjml=TINTED, subject="s", preheader="20 % for {{ contact.first_name }} & you"))
    root = lxml.html.document_fromstring(out.html)
    first = root.body[0]
    assert first.text_content().startswith("20 % for Zoë <script> & you")
    style = first.get("style").replace(" ", "")
    # White (or any) colour on the tinted background is what SpamAssassin scores as HTML_FONT_LOW_CONTRAST.
    assert "color" not in style and "display:none" in style and "mso-hide:all" in style
    assert first.get("aria-hidden") == "true"
    assert not [el for el in root.iter() if "color:#ffffff" in (el.get("style") or "").replace(" ", "").lower()]
    assert "20 %" not in out.text


def test_no_remote_fonts_unless_the_marketer_adds_them() -> None:
    _c, out = render(CampaignSource(mjml=TINTED, subject="s"))
    assert "fonts.googleapis.com" not in out.html and "<link" not in out.html and "@import" not in out.html
    own = TINTED.replace("<mjml>", '<mjml><mj-head><mj-font name="Lato" href="https://fonts.shop.test/lato.css"/>'
                         '</mj-head>').replace("<mj-text>", '<mj-text font-family="Lato, Arial">')
    _c, out = render(CampaignSource(mjml=own, subject="s"))
    assert '<link href="https://fonts.shop.test/lato.css"' in out.html
    assert "fonts.googleapis.com" not in out.html


@pytest.mark.parametrize(("lang", "expected"), [("", ('und', 'auto')), ("de", ("de", "ltr")),
                                                ("pt-BR", ("pt-BR", "ltr")), ("ar", ("ar", "rtl")),
                                                ('x" onload="y', ("und", "auto"))])
def test_mail_language_and_direction_come_from_the_campaign(lang: str, expected: tuple[str, str]) -> None:
    import lxml.html

    _c, out = render(CampaignSource(mjml=TINTED, subject="s", lang=lang))
    root = lxml.html.document_fromstring(out.html)
    assert (root.get("lang"), root.get("dir")) == expected
    article = root.body.xpath(".//div[@role='article']")[0]
    assert (article.get("lang"), article.get("dir")) == expected


def test_a_language_set_in_the_mjml_wins() -> None:
    _c, out = render(CampaignSource(mjml=TINTED.replace("<mjml>", '<mjml lang="fr">'), subject="s", lang="de"))
    assert out.html.startswith('<html lang="fr"')


def test_the_subject_is_the_document_title_and_the_web_page_has_main_and_h1() -> None:
    import lxml.html

    from mailer.compose import web_page

    _c, out = render(CampaignSource(mjml=TINTED, subject="News for {{ contact.first_name }}"))
    root = lxml.html.document_fromstring(out.html)
    assert root.findtext(".//title") == "News for Zoë <script>"
    assert "<script>" not in out.html                      # the title is escaped like any value
    page = lxml.html.document_fromstring(web_page(out.html))
    (main,) = page.body.findall("main")
    assert main.getparent() is page.body and len(page.body) == 1
    (h1,) = page.xpath("//h1")
    assert h1.text_content() == "News for Zoë <script>" and h1.getparent() is main
    assert "Our autumn picks" in main.text_content()
    own = TINTED.replace("<mj-text>", "<mj-text><h1>Autumn</h1>", 1)
    _c, out = render(CampaignSource(mjml=own, subject="s"))
    assert [h.text_content() for h in lxml.html.document_fromstring(web_page(out.html)).xpath("//h1")] == ["Autumn"]
