"""Print-ready PDFs with reportlab: one personalised letter or card per page, and address-label sheets.

reportlab installs from a pure-Python wheel and needs no system libraries (docs/post.md says why not WeasyPrint).
Everything here is pure: it takes `Letter`s and geometry and returns PDF bytes, so the print run
(campaigns.post.runs) decides what goes on the pages and this module only where. Positions are measured from the
top-left corner of the page, as the envelope standards give them, and turned into PDF coordinates when drawn.

Geometry: DIN 5008 form B (A4; address field 20 mm from the left and 45 mm from the top, 85 × 45 mm, its first
17.7 mm for the return address; fold marks at 105 and 210 mm, punch mark at 148.5 mm), US #10 window envelope
(US Letter; address 1 in from the left and 2⅛ in from the top; tri-fold marks), an A6 postcard (message left,
address right). Label sheets: Avery L7160 (A4, 3 × 7 of 63.5 × 38.1 mm) and Avery 5160 (US Letter, 3 × 10 of
2⅝ × 1 in).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import reportlab
import segno
from reportlab.lib.pagesizes import A4, A6, LETTER, landscape
from reportlab.lib.units import inch, mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from campaigns.models import LabelSheet, PostLayout

FONT, BOLD = "RapportSans", "RapportSans-Bold"
# A font with wide Unicode coverage when the system has one (names like Çağla or Oğuz), else reportlab's own Vera.
_FONT_CANDIDATES = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf"),
)


@cache
def fonts() -> tuple[str, str]:
    """Register the letter fonts once per process; returns (regular, bold) names."""
    bundled = Path(reportlab.__file__).parent / "fonts"
    regular, bold = next(((Path(r), Path(b)) for r, b in _FONT_CANDIDATES if Path(r).is_file() and Path(b).is_file()),
                         (bundled / "Vera.ttf", bundled / "VeraBd.ttf"))
    pdfmetrics.registerFont(TTFont(FONT, str(regular)))
    pdfmetrics.registerFont(TTFont(BOLD, str(bold)))
    return FONT, BOLD


@dataclass(frozen=True)
class Geometry:
    """Where things go on a page, in points from the top-left corner."""

    size: tuple[float, float]
    home_country: str                 # a letter to another country gets the country's name as its last line
    return_at: tuple[float, float]    # the return address line(s) in the window
    return_width: float
    address_at: tuple[float, float]   # the first line's top
    address_width: float
    address_lines: int                # how many lines the window shows
    text_at: tuple[float, float]      # date, then subject and body
    text_width: float
    text_bottom: float                # body stops here (from the top), above the coupon and the QR code
    qr_at: tuple[float, float]
    qr_size: float
    marks: tuple[float, ...] = ()     # fold marks (from the top)
    punch: float | None = None
    divider: float | None = None      # a postcard's line between message and address
    font_size: float = 10.5
    return_one_line: bool = False     # DIN 5008: the return address is one small line above the address


W_A4, H_A4 = A4
W_LT, H_LT = LETTER
W_A6, H_A6 = landscape(A6)
LAYOUTS: dict[PostLayout, Geometry] = {
    PostLayout.DIN5008: Geometry(
        size=A4, home_country="DE", return_at=(25 * mm, 47.5 * mm), return_width=80 * mm,
        address_at=(25 * mm, 63.5 * mm), address_width=80 * mm, address_lines=6,
        text_at=(25 * mm, 103.4 * mm), text_width=W_A4 - 45 * mm, text_bottom=H_A4 - 62 * mm,
        qr_at=(W_A4 - 20 * mm - 28 * mm, H_A4 - 52 * mm), qr_size=28 * mm,
        marks=(105 * mm, 210 * mm), punch=148.5 * mm, return_one_line=True),
    PostLayout.US10: Geometry(
        size=LETTER, home_country="US", return_at=(0.5 * inch, 0.6 * inch), return_width=3.25 * inch,
        address_at=(1.0 * inch, 2.125 * inch), address_width=3.75 * inch, address_lines=5,
        text_at=(1.0 * inch, 3.9 * inch), text_width=W_LT - 2 * inch, text_bottom=H_LT - 2.3 * inch,
        qr_at=(W_LT - 1.0 * inch - 1.1 * inch, H_LT - 2.05 * inch), qr_size=1.1 * inch,
        marks=(H_LT / 3, 2 * H_LT / 3)),
    PostLayout.CARD_A6: Geometry(
        size=(W_A6, H_A6), home_country="DE", return_at=(80 * mm, 10 * mm), return_width=40 * mm,
        address_at=(80 * mm, 52 * mm), address_width=62 * mm, address_lines=6,
        text_at=(8 * mm, 10 * mm), text_width=62 * mm, text_bottom=H_A6 - 30 * mm,
        qr_at=(52 * mm, H_A6 - 25 * mm), qr_size=18 * mm, divider=74 * mm, font_size=8),
}


@dataclass(frozen=True)
class Letter:
    """What one page says: the recipient's address, the personalised text, their code and QR link."""

    contact_id: int
    address: Sequence[str]
    subject: str
    body: str
    date: str
    coupon_code: str = ""
    coupon_text: str = ""       # "15% off your next order, valid until 31 December 2026"
    qr_url: str = ""
    qr_caption: str = ""


def _draw_lines(c: Canvas, lines: Iterable[str], x: float, top: float, font: str, size: float, leading: float,
                page_h: float, width: float) -> float:
    """Draw lines from `top` down, each shrunk to fit `width`; returns the top of the next line."""
    y = top
    for line in lines:
        fit = size
        while fit > 5 and _width(line, font, fit) > width:
            fit -= 0.5
        y += leading
        c.setFont(font, fit)
        c.drawString(x, page_h - y, line)
    return y


@lru_cache(maxsize=65536)
def _width(word: str, font: str, size: float) -> float:
    """A word's width, remembered: letters of one campaign share most of their words, and measuring a TrueType
    string in pure Python is the slowest step of a page."""
    return pdfmetrics.stringWidth(word, font, size)


def _split(paragraph: str, font: str, size: float, width: float) -> list[str]:
    """Greedy line breaking by words; a word wider than the line is broken by reportlab's simpleSplit."""
    space = _width(" ", font, size)
    lines: list[str] = []
    line: list[str] = []
    used = 0.0
    for word in paragraph.split():
        w = _width(word, font, size)
        if w > width:
            if line:
                lines.append(" ".join(line))
            pieces = simpleSplit(word, font, size, width) or [word]
            lines.extend(pieces[:-1])
            line, used = [pieces[-1]], _width(pieces[-1], font, size)
        elif line and used + space + w > width:
            lines.append(" ".join(line))
            line, used = [word], w
        else:
            used += (space if line else 0) + w
            line.append(word)
    if line:
        lines.append(" ".join(line))
    return lines


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    lines: list[str] = []
    for paragraph in text.replace("\r\n", "\n").split("\n"):
        lines.extend(_split(paragraph, font, size, width) or [""])
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _fit_body(body: str, font: str, size: float, width: float, height: float) -> tuple[list[str], float]:
    """The body's lines and the font size that lets them fit (down to 70 %); cut with … if they never do."""
    for scale in (1.0, 0.9, 0.8, 0.7):
        lines = _wrap(body, font, size * scale, width)
        if len(lines) * size * scale * 1.35 <= height:
            return lines, size * scale
    small = size * 0.7
    room = max(int(height // (small * 1.35)), 1)
    lines = _wrap(body, font, small, width)[:room]
    lines[-1] = lines[-1].rstrip() + " …"
    return lines, small


def draw_qr(c: Canvas, url: str, x: float, top: float, size: float, page_h: float) -> None:
    """A QR code as filled rectangles (one per run of dark modules): sharp at any printer resolution."""
    # A fixed mask pattern (valid for every reader) skips segno's search for the best of eight, most of its time.
    qr = segno.make(url, error="m", micro=False, mask=4)
    matrix = qr.matrix
    n = len(matrix)
    module = size / n
    c.setFillColorRGB(0, 0, 0)
    for row, cells in enumerate(matrix):
        col = 0
        while col < n:
            if cells[col]:
                start = col
                while col < n and cells[col]:
                    col += 1
                c.rect(x + start * module, page_h - top - (row + 1) * module, (col - start) * module, module,
                       stroke=0, fill=1)
            else:
                col += 1


def _letter_page(c: Canvas, g: Geometry, letter: Letter, return_lines: Sequence[str]) -> None:
    regular, bold = fonts()
    w, h = g.size
    for mark in g.marks:
        c.setLineWidth(0.3)
        c.line(3 * mm, h - mark, 8 * mm, h - mark)
    if g.punch is not None:
        c.line(3 * mm, h - g.punch, 10 * mm, h - g.punch)
    if g.divider is not None:
        c.line(g.divider, 8 * mm, g.divider, h - 8 * mm)
    if return_lines:
        _draw_lines(c, [" · ".join(return_lines)] if g.return_one_line else return_lines,
                    g.return_at[0], g.return_at[1] - 7, regular, 7, 8.5, h, g.return_width)
    _draw_lines(c, list(letter.address)[:g.address_lines], g.address_at[0], g.address_at[1], regular,
                g.font_size if g.divider is None else 9, 12 if g.divider is None else 11, h, g.address_width)
    x, top = g.text_at
    size = g.font_size
    if g.divider is None:
        c.setFont(regular, size)
        c.drawRightString(x + g.text_width, h - top, letter.date)
        top += size * 2.2
    top = _draw_lines(c, [letter.subject], x, top, bold, size + 1.5, (size + 1.5) * 1.3, h, g.text_width)
    top += size * 0.8
    reserve = (size * 3.2) if letter.coupon_code else 0
    lines, fit = _fit_body(letter.body, regular, size, g.text_width, g.text_bottom - top - reserve)
    top = _draw_lines(c, lines, x, top, regular, fit, fit * 1.35, h, g.text_width)
    if letter.coupon_code:
        box_top = top + size
        c.setLineWidth(0.8)
        inner = max(pdfmetrics.stringWidth(f"Your code: {letter.coupon_code}", bold, size),
                    pdfmetrics.stringWidth(letter.coupon_text, regular, size * 0.85))
        c.rect(x, h - box_top - size * 2.4, min(g.text_width, inner + 12), size * 2.4, stroke=1, fill=0)
        _draw_lines(c, [f"Your code: {letter.coupon_code}"], x + 6, box_top, bold, size, size * 1.1, h,
                    g.text_width - 12)
        if letter.coupon_text:
            _draw_lines(c, [letter.coupon_text], x + 6, box_top + size * 1.1, regular, size * 0.85, size,
                        h, g.text_width - 12)
    if letter.qr_url:
        qx, qtop = g.qr_at
        draw_qr(c, letter.qr_url, qx, qtop, g.qr_size, h)
        if letter.qr_caption:
            c.setFont(regular, 6.5)
            c.drawCentredString(qx + g.qr_size / 2, h - qtop - g.qr_size - 8, letter.qr_caption)


def letters_pdf(letters: Iterable[Letter], layout: PostLayout, return_address: Sequence[str] = (),
                progress: Callable[[int], None] | None = None, every: int = 50) -> bytes:
    """The print file: one page per letter, in the order given; `progress(done)` every `every` pages."""
    g = LAYOUTS[layout]
    out = io.BytesIO()
    c = Canvas(out, pagesize=g.size, pageCompression=1)
    c.setTitle("Rapport print run")
    c.setCreator("Rapport")
    done = 0
    for letter in letters:
        _letter_page(c, g, letter, return_address)
        c.showPage()
        done += 1
        if progress is not None and done % every == 0:
            progress(done)
    if not done:
        c.showPage()
    c.save()
    if progress is not None:
        progress(done)
    return out.getvalue()


@dataclass(frozen=True)
class Sheet:
    """An address-label sheet: its page size, grid and margins (points)."""

    size: tuple[float, float]
    columns: int
    rows: int
    label: tuple[float, float]
    left: float
    top: float
    pitch: tuple[float, float]
    font_size: float


SHEETS: dict[LabelSheet, Sheet] = {
    LabelSheet.L7160: Sheet(A4, 3, 7, (63.5 * mm, 38.1 * mm), 7.25 * mm, 15.15 * mm, (66.04 * mm, 38.1 * mm), 9),
    LabelSheet.AVERY5160: Sheet(LETTER, 3, 10, (2.625 * inch, 1.0 * inch), 0.1875 * inch, 0.5 * inch,
                                (2.75 * inch, 1.0 * inch), 8),
}


def labels_pdf(addresses: Iterable[Sequence[str]], sheet: LabelSheet) -> bytes:
    """Address labels, filled row by row, as many sheets as needed."""
    regular, _bold = fonts()
    s = SHEETS[sheet]
    w, h = s.size
    out = io.BytesIO()
    c = Canvas(out, pagesize=s.size, pageCompression=1)
    c.setTitle("Rapport address labels")
    per_sheet = s.columns * s.rows
    pad = 3 * mm
    n = 0
    for n, lines in enumerate(addresses, start=1):
        slot = (n - 1) % per_sheet
        row, col = divmod(slot, s.columns)
        x = s.left + col * s.pitch[0] + pad
        top = s.top + row * s.pitch[1] + pad * 0.6
        leading = s.font_size * 1.15
        shown = list(lines)[:max(int((s.label[1] - pad) // leading), 1)]
        _draw_lines(c, shown, x, top, regular, s.font_size, leading, h, s.label[0] - 2 * pad)
        if slot == per_sheet - 1:
            c.showPage()
    if n == 0 or n % per_sheet:
        c.showPage()
    c.save()
    return out.getvalue()
