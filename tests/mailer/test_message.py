"""Message bytes: encodings, folding, line limits, structure."""

import email
import email.policy

from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.message import (
    MessageTemplate,
    address_header,
    ascii_domain,
    encode_part,
    format_address,
    format_date,
    serialize,
)

TEMPLATE = MessageTemplate.create(from_name="Zoë's Gärten", from_email="news@shop.test",
                                  reply_to="help@shop.test", feedback_id="1:nurture:rapport")


def build(subject: str = "Grüße", html: str = "<p>Hallo</p>", text: str = "Hallo", name: str = "Jürgen Müller"):
    headers, body = TEMPLATE.build(to_name=name, to_email="j@example.com", subject=subject,
                                   message_id="<tok@shop.test>", date=format_date(0), html=html, text=text,
                                   list_unsubscribe=["https://t/u/x", "mailto:unsubscribe+x@shop.test"])
    return serialize(headers, body)


def test_parses_back_with_non_ascii_names_and_subject() -> None:
    msg = email.message_from_bytes(build(subject="Grüße aus Köln — 🌱"), policy=email.policy.default)
    assert msg["Subject"] == "Grüße aus Köln — 🌱"
    assert msg["To"].addresses[0].display_name == "Jürgen Müller"
    assert msg["From"].addresses[0].display_name == "Zoë's Gärten"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content().strip() == "Hallo"
    assert msg.get_body(("html",)).get_content().strip() == "<p>Hallo</p>"


def test_internationalized_addresses_stay_addresses_in_the_to_header() -> None:
    assert ascii_domain("ana@bücher.example") == "ana@xn--bcher-kva.example"
    assert ascii_domain("zoë@example.com") == "zoë@example.com"          # a UTF-8 local part needs SMTPUTF8
    assert ascii_domain("plain@example.com") == "plain@example.com"
    # An encoded-word name, then the address itself: A-labels, or UTF-8 (RFC 6532) for the local part.
    assert address_header("To", "Zoë Ångström", "zoë@exämple.com") == \
        "=?utf-8?b?Wm/DqyDDhW5nc3Ryw7Zt?= <zoë@xn--exmple-cua.com>"
    assert address_header("To", "Smith, Ana", "ana@bücher.example") == '"Smith, Ana" <ana@xn--bcher-kva.example>'
    assert address_header("To", "Zoe Ann", "zoë@example.com") == "Zoe Ann <zoë@example.com>"
    long_name = "Zoe " * 20
    folded = address_header("To", long_name, "zoë@example.com")
    assert folded.endswith("\r\n <zoë@example.com>") and all(len(x) <= 78 for x in folded.split("\r\n"))
    # A reply forwarded to its owner carries the customer in Reply-To, formatted the same way.
    headers, body = TEMPLATE.build(to_name="Zoë", to_email="zoë@example.com", subject="Hi", message_id="<t@s>",
                                   date=format_date(0), html="<p>x</p>", text="x",
                                   reply_to=format_address("Jörg Ökonom", "jörg@bücher.example"))
    raw = serialize(headers, body)
    msg = email.message_from_string(raw.decode("utf-8"), policy=email.policy.SMTPUTF8)
    assert (msg["To"].addresses[0].display_name, msg["To"].addresses[0].addr_spec) == ("Zoë", "zoë@example.com")
    assert (msg["Reply-To"].addresses[0].display_name, msg["Reply-To"].addresses[0].addr_spec) == \
        ("Jörg Ökonom", "jörg@xn--bcher-kva.example")


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=3000), st.text(max_size=300))
def test_any_content_round_trips_and_respects_line_limits(body: str, subject: str) -> None:
    raw = build(subject=subject, html=body, text=body)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")          # only CRLF line ends
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    expected = body.replace("\r\n", "\n").replace("\r", "\n")
    got = msg.get_body(("plain",)).get_content()
    assert got.replace("\r\n", "\n").rstrip("\n") == expected.rstrip("\n") or "\r" in body


def test_base64_is_chosen_when_shorter() -> None:
    assert b"base64" in encode_part("日本語のテキスト" * 50, "plain")
    assert b"quoted-printable" in encode_part("Plain English text " * 50, "plain")


def test_long_lines_are_wrapped() -> None:
    raw = build(html="<p>" + "x" * 5000 + "</p>", subject="word " * 80)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_date_header_uses_a_numeric_zone() -> None:
    raw = build()
    date_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"Date: "))
    assert date_line == b"Date: Thu, 01 Jan 1970 00:00:00 +0000"


@settings(max_examples=80, deadline=None)
@given(st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S")), min_size=1, max_size=200)
       .filter(lambda s: not s.isascii()))
def test_encoded_subject_lines_stay_within_78_octets(subject: str) -> None:
    raw = build(subject=subject)
    subject_lines = raw.split(b"\r\nDate: ", 1)[0].split(b"Subject: ", 1)[1].split(b"\r\n")
    assert len(b"Subject: " + subject_lines[0]) <= 78
    assert max(len(line) for line in subject_lines) <= 78
    assert email.message_from_bytes(raw, policy=email.policy.default)["Subject"] == subject


def test_first_subject_line_of_a_long_accented_subject() -> None:
    subject = "Grüße aus Köln — unsere Herbstauswahl ist da, mit 20 % auf alles bis Sonntag"
    head = build(subject=subject).split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    first = next(line for line in head if line.startswith(b"Subject: "))
    assert len(first) <= 78
    msg = email.message_from_bytes(build(subject=subject), policy=email.policy.default)
    assert msg["Subject"] == subject
