"""Every CSV the product emits goes through one writer that neutralises formulas and keeps plain data intact."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

import pytest

from campaigns.csvfiles import safe_cell
from tests.campaigns.contacts.test_import import import_file
from tests.campaigns.web import test_admin

admin_user = test_admin.admin_user
logged_in = test_admin.logged_in
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("value", "cell"), [
    ("=HYPERLINK(\"http://evil\")", "'=HYPERLINK(\"http://evil\")"), ("@SUM(1)", "'@SUM(1)"),
    ("+bad@", "'+bad@"), ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"), ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"), ("-", "'-"), ("+", "'+"), ("+49 152 =1", "'+49 152 =1"), ("-1e5x", "'-1e5x"),
    ("+49 152 1234567", "+49 152 1234567"), ("+1 (555) 010-9999", "+1 (555) 010-9999"),
    ("+43/1/5551234", "+43/1/5551234"), ("-12.50", "-12.50"), ("-3", "-3"), ("-1,5", "-1,5"),
    ("plain", "plain"), ("a=b", "a=b"), (None, ""), (7, "7"), (dt.date(2026, 12, 2), "2026-12-02"),
])
def test_formulas_get_an_apostrophe_and_plain_data_stays(value, cell: str) -> None:
    assert safe_cell(value) == cell


def test_the_import_error_report_neutralises_formulas(logged_in, run_worker) -> None:
    buf = io.StringIO()
    csv.writer(buf).writerows([["email", "first_name", "phone"],
                               ["=HYPERLINK(\"http://evil.example\",\"x\")", "Ann", "+49 152 1234567"],
                               ["@SUM(1)", "Bob", "-12.50"], ["+bad@", "Cy", ""]])
    data = buf.getvalue().encode()
    p = import_file(logged_in, run_worker, data)
    assert p["failed"] == 3
    report = logged_in.get(p["url"].replace("/status", "/errors.csv"))
    rows = list(csv.reader(io.StringIO(report.get_data(as_text=True).lstrip("\ufeff"))))
    assert [r[:3] for r in rows[1:]] == [["'=HYPERLINK(\"http://evil.example\",\"x\")", "Ann", "+49 152 1234567"],
                                         ["'@SUM(1)", "Bob", "-12.50"], ["'+bad@", "Cy", ""]]


def test_no_csv_writer_outside_the_one_module() -> None:
    """A new CSV download must use campaigns.csvfiles (so it cannot forget the neutralising)."""
    allowed = {ROOT / "campaigns" / "csvfiles.py"}
    offenders = [str(path.relative_to(ROOT)) for folder in ("campaigns", "mailer")
                 for path in (ROOT / folder).rglob("*.py")
                 if path not in allowed and re.search(r"csv\.(writer|DictWriter)\b|\bDictWriter\(",
                                                      path.read_text(encoding="utf-8"))]
    assert offenders == []
