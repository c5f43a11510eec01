"""A contact's birthday as people give it: a date, or only the day and month.

A birthday without a year is stored with the year NO_YEAR (1904, a leap year, so 29 February is a date); birthday
automations and the birthday-month segment read only the month and day. Wherever a birthday leaves the database as
text (CSV exports, the API, the personal-data export, template variables, the admin form) one without a year is
written ``--MM-DD``, ISO 8601's date without a year (as vCard writes it), and every way in (the admin form, the
API, CSV imports) takes that form back. The year 1904 is never shown to anyone.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re

NO_YEAR = 1904
_YEARLESS = re.compile(r"--(\d\d)-?(\d\d)")


def text(day: dt.date | None) -> str:
    """The birthday as text: "1990-04-23", "--04-23" without a year, "" when not known."""
    if day is None:
        return ""
    if day.year == NO_YEAR:
        return f"--{day.month:02d}-{day.day:02d}"
    return day.isoformat()


def parse(value: str) -> dt.date:
    """A birthday from "1990-04-23" or "--04-23" (also "--0423"); ValueError for anything else."""
    value = value.strip()
    match = _YEARLESS.fullmatch(value)
    if match is None:
        if len(value) != 10 or value[4] != "-":
            raise ValueError(f"not a date like 1990-04-23: {value!r}")
        return dt.date.fromisoformat(value)
    month, day = int(match[1]), int(match[2])
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(NO_YEAR, month)[1]:
        raise ValueError(f"no such day of the year: {value!r}")
    return dt.date(NO_YEAR, month, day)


def fields(day: dt.date | None) -> dict[str, object]:
    """Template variables besides `birthday`: birthday_day and birthday_month (numbers, None when not known) and
    birthday_year (None when not given), so a template formats a birthday without slicing its text."""
    if day is None:
        return {"birthday_day": None, "birthday_month": None, "birthday_year": None}
    return {"birthday_day": day.day, "birthday_month": day.month,
            "birthday_year": None if day.year == NO_YEAR else day.year}
