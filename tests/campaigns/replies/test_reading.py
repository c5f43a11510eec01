"""Reading replies as real mail clients write them: quoted history and signatures cut off (Gmail, Outlook, Apple
Mail, German and French clients), HTML-only mail turned into text and sanitised, odd encodings and garbage."""

from __future__ import annotations

import pytest

from campaigns.replies.reading import MAX_TEXT, new_text, read_reply

SAMPLES = {
    "gmail": ("Thanks, I'll come!\n\nBest,\nJane\n\nOn Wed, Dec 2, 2026 at 9:00 AM Green Thumb <news@shop.test> "
              "wrote:\n> Our winter sale\n> starts now\n", "Thanks, I'll come!"),
    "gmail wrapped header": ("Yes!\n\nOn Wed, Dec 2, 2026 at 9:00 AM Green Thumb <\nnews@shop.test> wrote:\n\n"
                             "> Our winter sale\n", "Yes!"),
    "outlook": ("Yes please send me the catalogue.\n\n________________________________\nFrom: Green Thumb "
                "<news@shop.test>\nSent: Wednesday, December 2, 2026 9:00 AM\nTo: Jane <jane@example.org>\n"
                "Subject: Winter sale\n\nOur winter sale starts now\n", "Yes please send me the catalogue."),
    "outlook german": ("Ja, bitte.\n\nVon: Green Thumb <news@shop.test>\nGesendet: Mittwoch, 2. Dezember 2026 09:00\n"
                       "An: Jana <jana@example.org>\nBetreff: Winter\n\nUnser Angebot\n", "Ja, bitte."),
    "apple mail": ("Sounds good.\n\nSent from my iPhone\n\n> On 2. Dec 2026, at 09:00, Green Thumb "
                   "<news@shop.test> wrote:\n> \n> Our winter sale\n", "Sounds good."),
    "german": ("Danke, ich komme gerne.\n\nViele Grüße\nJana\n\nAm 02.12.2026 um 09:00 schrieb Green Thumb "
               "<news@shop.test>:\n> Unser Winterschlussverkauf\n", "Danke, ich komme gerne."),
    "french": ("Merci beaucoup !\n\nLe mer. 2 déc. 2026 à 09:00, Green Thumb <news@shop.test> a écrit :\n"
               "> Les soldes\n", "Merci beaucoup !"),
    "signature": ("Count me in.\n\n-- \nJane Doe\nACME Corp\n+49 30 1234\n", "Count me in."),
    "no quote at all": ("Just a line.\n", "Just a line."),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_the_new_text_is_what_the_person_wrote_now(name: str) -> None:
    text, expected = SAMPLES[name]
    assert new_text(text) == expected


def test_only_quotes_keeps_the_whole_text_rather_than_nothing() -> None:
    assert new_text("> quoted only\n> more") != ""
    assert len(new_text("x" * (MAX_TEXT * 3))) == MAX_TEXT


def _raw(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode() + b"\r\n" + body


def test_encoded_headers_latin1_body_and_reply_tokens_are_read() -> None:
    raw = _raw("From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <Juergen@Example.org>\n"
               "To: \"Green Thumb\" <reply+AbC_-123@reply.shop.test>\nCc: reply+XyZ@reply.shop.test\n"
               "Subject: =?iso-8859-1?q?Re:_Gr=FC=DFe?=\nMessage-ID: <m1@example.org>\n"
               "In-Reply-To: <tok1@shop.test>\nReferences: <tok0@shop.test> <tok1@shop.test>\n"
               "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n",
               b"Sch=F6ne Gr=FC=DFe\r\n")
    r = read_reply(raw, "reply+Env-Tok@reply.shop.test")
    assert (r.from_name, r.from_email, r.subject) == ("Jürgen Müller", "juergen@example.org", "Re: Grüße")
    assert r.reply_tokens == ["Env-Tok", "AbC_-123", "XyZ"]     # the envelope's first
    assert r.references == ["<tok1@shop.test>", "<tok0@shop.test>"] and r.message_id == "<m1@example.org>"
    assert r.text == "Schöne Grüße"


def test_outlook_html_only_reply_becomes_text_and_its_html_is_sanitised() -> None:
    html = ('<html><head><style>p{color:red}</style></head><body><p>Bitte zwei Plätze <a href="javascript:alert(1)">'
            'reservieren</a>.</p><img src="https://t.example/p.gif" onerror="alert(2)">'
            '<div id="divRplyFwdMsg"><b>Von:</b> Green Thumb &lt;news@shop.test&gt;<br><b>Gesendet:</b> Mittwoch, '
            '2. Dezember 2026 09:00<br><b>An:</b> Jana<br><b>Betreff:</b> Winter</div><p>Unser Angebot</p>'
            '<iframe src="https://evil.example"></iframe><form action="https://evil.example"><input></form>'
            '</body></html>')
    raw = _raw("From: jana@example.org\nTo: reply+T@reply.shop.test\nSubject: AW: Winter\n"
               "Content-Type: text/html; charset=utf-8\n", html.encode())
    r = read_reply(raw)
    assert r.text == "Bitte zwei Plätze reservieren."
    assert "Unser Angebot" in r.original_text
    for bad in ("javascript:", "<img", "onerror", "<iframe", "<form", "<style", "evil.example", "t.example"):
        assert bad not in r.original_html, bad
    assert "<p>Bitte zwei Plätze <a" in r.original_html and "reservieren</a>.</p>" in r.original_html


def test_attachments_are_not_read_as_text() -> None:
    raw = _raw("From: a@example.org\nTo: reply+T@x.test\nMIME-Version: 1.0\n"
               'Content-Type: multipart/mixed; boundary="b"\n',
               b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\nContent-Type: text/plain\r\n"
               b"Content-Disposition: attachment; filename=x.txt\r\n\r\nSECRET ATTACHMENT\r\n--b--\r\n")
    r = read_reply(raw)
    assert r.text == "See attached." and "SECRET" not in r.original_text


@pytest.mark.parametrize("raw", [b"", b"\x00\xff\xfe garbage", b"From: <<<>>>\r\n\r\n",
                                 b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n" * 50,
                                 b"From: a@b.c\r\nContent-Type: text/plain; charset=klingon\r\n\r\n\xff\xfe"])
def test_garbage_never_raises(raw: bytes) -> None:
    r = read_reply(raw)
    assert isinstance(r.text, str) and r.reply_tokens == []


def test_long_lines_are_kept_whole_and_a_quote_far_down_cuts_nothing() -> None:
    paragraph = " ".join(["Word"] * 400)   # one flowed paragraph, far wider than the quote finder's probe
    assert new_text(f"{paragraph}\n\nOn Wed, Dec 2, 2026 at 9:00 AM A <a@b.test> wrote:\n> q\n") == paragraph
    many = "\n".join(f"line {i}" for i in range(300))
    assert new_text(f"{many}\n\nOn Wed, Dec 2, 2026 at 9:00 AM A <a@b.test> wrote:\n> q\n").startswith(many)


def test_nul_bytes_and_undecodable_headers_become_storable_text() -> None:
    raw = (b"From: \xff\xfe Odd <odd@example.org>\r\nTo: reply+T@x.test\r\nSubject: caf\xe9 \x00 bar\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\nnul \x00 here \xff\r\n")
    r = read_reply(raw)
    for value in (r.from_name, r.subject, r.text, r.original_text):
        assert "\x00" not in value
        value.encode("utf-8")   # no lone surrogates: every database takes it
    assert r.from_email == "odd@example.org" and r.text.startswith("nul")


@pytest.mark.parametrize(("env", "message"), [
    ({"REPLY_DOMAIN": "reply@example.com"}, "REPLY_DOMAIN must be a domain name"),
    ({"REPLY_DOMAIN": "no spaces.example.com"}, "REPLY_DOMAIN must be a domain name"),
    ({"REPLY_FORWARD_TO": "team"}, "REPLY_FORWARD_TO must be one address"),
    ({"REPLY_FORWARD_TO": "a@example.com, b@example.com"}, "REPLY_FORWARD_TO must be one address"),
])
def test_bad_reply_settings_are_refused_with_a_clear_message(tmp_path, env, message) -> None:
    from campaigns.config import ConfigError, from_env

    with pytest.raises(ConfigError, match=message):
        from_env({"RAPPORT_INSTANCE": str(tmp_path), "SECRET_KEY": "k" * 32, **env})


def test_reply_settings_are_read(tmp_path) -> None:
    from campaigns.config import from_env

    s = from_env({"RAPPORT_INSTANCE": str(tmp_path), "SECRET_KEY": "k" * 32, "REPLY_ADDRESSES": "1",
                       "REPLY_DOMAIN": "Reply.Example.com", "REPLY_FORWARD_TO": "team@example.com",
                       "DKIM_DOMAIN": "example.com"})
    assert (s.reply_address_domain, s.reply_forward_to) == ("reply.example.com", "team@example.com")
    off = from_env({"RAPPORT_INSTANCE": str(tmp_path), "SECRET_KEY": "k" * 32, "DKIM_DOMAIN": "example.com"})
    assert off.reply_address_domain == ""
    on = from_env({"RAPPORT_INSTANCE": str(tmp_path), "SECRET_KEY": "k" * 32, "DKIM_DOMAIN": "example.com",
                        "REPLY_ADDRESSES": "yes", "BOUNCE_DOMAIN": "bounces.example.com"})
    assert on.reply_address_domain == "bounces.example.com"
