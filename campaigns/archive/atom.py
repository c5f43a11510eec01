"""An archive's Atom 1.0 feed (RFC 4287), written with ElementTree so every title and summary is escaped."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from xml.etree import ElementTree as ET

from campaigns.archive.issues import Entry

ATOM = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml; charset=utf-8"
# Characters XML 1.0 cannot carry at all (ElementTree would write them and the feed would not parse).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
    node.text = _NOT_XML.sub("", text)
    return node


def feed(*, title: str, subtitle: str, index_url: str, feed_url: str, author: str, entries: Sequence[Entry],
         issue_url: str, fallback_updated: dt.datetime) -> bytes:
    """The feed document; issue_url is a format string with {slug}."""
    ET.register_namespace("", ATOM)
    root = ET.Element(f"{{{ATOM}}}feed")
    _text(root, "id", index_url)
    _text(root, "title", title)
    if subtitle:
        _text(root, "subtitle", subtitle)
    _text(root, "updated", _stamp(max((e.sent_at for e in entries), default=fallback_updated)))
    ET.SubElement(root, f"{{{ATOM}}}link", {"rel": "self", "type": "application/atom+xml", "href": feed_url})
    ET.SubElement(root, f"{{{ATOM}}}link", {"rel": "alternate", "type": "text/html", "href": index_url})
    _text(ET.SubElement(root, f"{{{ATOM}}}author"), "name", author)
    _text(root, "generator", "Rapport")
    for entry in entries:
        url = issue_url.format(slug=entry.slug)
        node = ET.SubElement(root, f"{{{ATOM}}}entry")
        _text(node, "id", url)
        _text(node, "title", entry.subject, type="text")
        ET.SubElement(node, f"{{{ATOM}}}link", {"rel": "alternate", "type": "text/html", "href": url})
        _text(node, "published", _stamp(entry.sent_at))
        _text(node, "updated", _stamp(entry.sent_at))
        _text(node, "summary", entry.summary, type="text")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
