"""CSV as spreadsheets write it: semicolons, UTF-16; a damaged line or a huge cell costs one row, not the file."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from campaigns.models import Contact
from tests.campaigns.contacts.test_import import import_file, upload
from tests.campaigns.web.test_admin import admin_user, logged_in  # noqa: F401 - fixtures


def _people(db_session) -> dict[str, tuple[str, str]]:
    db_session.rollback()
    return {c.email: (c.first_name, c.city) for c in db_session.scalars(select(Contact))}


def _report(client, progress: dict) -> dict[str, list[str]]:
    text = client.get(progress["url"].replace("/status", "/errors.csv")).get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(text)))
    return {(r[0] if r else ""): r for r in rows[1:]}


def test_semicolon_separated_excel_export(logged_in, run_worker, db_session) -> None:  # noqa: F811
    data = "\ufeffE-Mail;Vorname;Stadt\r\nanna@example.com;Anna;Köln\r\n\"bo@example.com\";\"Bo; Jr.\";Wien\r\n"
    r = upload(logged_in, data.encode("utf-8"))
    page = logged_in.get(r.headers["Location"]).get_data(as_text=True)
    assert "Vorname" in page and "Stadt" in page and "E-Mail;Vorname" not in page   # three columns, not one
    p = import_file(logged_in, run_worker, data.encode("utf-8"))
    assert (p["created"], p["failed"]) == (2, 0)
    assert _people(db_session) == {"anna@example.com": ("Anna", "Köln"), "bo@example.com": ("Bo; Jr.", "Wien")}


def test_utf16_with_and_without_byte_order_mark(logged_in, run_worker, db_session) -> None:  # noqa: F811
    # Excel's "Unicode text": UTF-16 with a BOM and tabs.
    text = "Email\tFirst name\tCity\r\nzoe@example.com\tZoë\tMünchen\r\n"
    p = import_file(logged_in, run_worker, text.encode("utf-16"))
    assert (p["created"], p["failed"]) == (1, 0)
    p = import_file(logged_in, run_worker, "email,first_name\r\nali@example.com,Alí\r\n".encode("utf-16-le"))
    assert (p["created"], p["failed"]) == (1, 0)
    assert _people(db_session) == {"zoe@example.com": ("Zoë", "München"), "ali@example.com": ("Alí", "")}


def test_a_nul_byte_rejects_its_row_only(logged_in, run_worker, db_session) -> None:  # noqa: F811
    data = b"email,first_name\nann@example.com,Ann\nbad@example.com,Br\x00oken\ncy@example.com,Cy\n"
    p = import_file(logged_in, run_worker, data)
    assert (p["created"], p["failed"]) == (2, 1)
    assert set(_people(db_session)) == {"ann@example.com", "cy@example.com"}
    bad = _report(logged_in, p)["bad@example.com"]
    assert bad[:2] == ["bad@example.com", "Broken"] and "NUL byte" in bad[-1]


def test_an_over_long_cell_in_the_first_rows_rejects_its_row_only(logged_in, run_worker,  # noqa: F811
                                                                   db_session) -> None:
    data = (b"email,first_name\nann@example.com,Ann\nhuge@example.com," + b"x" * (3 * 1024 * 1024)
            + b"\ncy@example.com,Cy\n")
    r = upload(logged_in, data)
    assert r.status_code == 302, r.get_data(as_text=True)[:500]
    p = import_file(logged_in, run_worker, data)
    assert p["failed"] == 1 and p["created"] == 2
    assert set(_people(db_session)) == {"ann@example.com", "cy@example.com"}
