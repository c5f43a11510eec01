"""The plain-text part derived from the HTML when the marketer wrote none: block elements become lines, links keep
their URL.
"""

from __future__ import annotations

import lxml.html

_BLOCK = {"p", "div", "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "section",
          "blockquote", "center", "article", "header", "footer"}


def html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML email: paragraphs, headings, list items, links as 'text (url)'."""
    try:
        root = lxml.html.document_fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return ""
    for bad in root.xpath("//head|//style|//script|//title"):
        bad.drop_tree()
    parts: list[str] = []

    def walk(el) -> None:
        if not isinstance(el.tag, str):   # comments (Outlook conditionals) and processing instructions
            if el.tail:
                parts.append(el.tail)
            return
        tag = el.tag
        if "display:none" in (el.get("style") or "").replace(" ", ""):   # preheader and other hidden text
            if el.tail:
                parts.append(el.tail)
            return
        if tag == "br":
            parts.append("\n")
        elif tag in _BLOCK:
            parts.append("\n\n" if tag not in ("li", "tr") else "\n")
            if tag == "li":
                parts.append("- ")
        if tag == "img" and el.get("alt") and el.get("width") != "1":
            parts.append(f"[{el.get('alt')}]")
        if el.text and tag not in ("style", "script"):
            parts.append(el.text)
        for child in el:
            walk(child)
        if tag == "a":
            href = (el.get("href") or "").strip()
            label = " ".join(el.text_content().split())
            if href and not href.startswith("#") and href != label:
                parts.append(f" ({href.removeprefix('mailto:')})")
        if tag in _BLOCK:
            parts.append("\n")
        if el.tail:
            parts.append(el.tail)

    walk(root.body if root.find("body") is not None else root)
    text = "".join(parts)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip() + "\n"
