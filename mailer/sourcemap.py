"""Which line of the marketer's editor a failing piece of a compiled template came from.

The compiled HTML is MJML's output after the CSS inliner, mostly on one line; the wire templates re-encode it. So
errors are traced back by the Jinja tag they happened in: its code is looked up in the MJML source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def error_line(exc: BaseException) -> int | None:
    """The template line an error was raised on (Jinja rewrites tracebacks to show template frames)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def tag_key(tag: str) -> str:
    """A Jinja tag's code as written in the editor: wire templates wrap {{ x }} as {{ (x)|qp }}."""
    inner = " ".join(tag[2:-2].strip("-+ \n\t").split())
    if tag.startswith("{{") and inner.startswith("(") and inner.endswith(")|qp"):
        inner = inner[1:-4].strip()
    return tag[:2] + inner


def mark_lines(html: str, mjml: str) -> tuple[str, dict[int, int]]:
    """html with each of the marketer's Jinja tags starting a template line of its own, and the MJML line of each.

    MJML and the CSS inliner put most of a mail on one line, so Jinja's line numbers would name nothing. A newline
    right after a tag's opening delimiter changes no output but gives the tag's code its own line.
    """
    if "{% raw" in html or "{%- raw" in html:
        return html, {}       # a newline inside a tag within {% raw %} would be output
    first: dict[str, int] = {}
    for match in JINJA_TAG.finditer(mjml):
        first.setdefault(tag_key(match.group(0)), mjml.count("\n", 0, match.start()) + 1)
    out: list[str] = []
    lines: dict[int, int] = {}
    pos, line = 0, 1
    for match in JINJA_TAG.finditer(html):
        tag = match.group(0)
        mjml_line = first.get(tag_key(tag))
        if mjml_line is None or tag.startswith("{#"):
            continue
        cut = match.start() + (3 if tag[2] in "-+" else 2)
        out += [html[pos:cut], "\n"]
        line += html.count("\n", pos, cut) + 1
        lines[line] = mjml_line
        pos = cut
    out.append(html[pos:])
    return "".join(out), lines


def source_line(sources: Mapping[str, str], part: str, line: int | None) -> int | None:
    """The MJML line holding the Jinja code found on line of the compiled template part, if it can be told."""
    compiled = sources.get(part, "")
    if not line or not compiled:
        return None
    lines = compiled.split("\n")
    if line > len(lines):
        return None
    wanted = {tag_key(t) for t in JINJA_TAG.findall(lines[line - 1])}
    mjml = sources.get("mjml", "")
    for match in JINJA_TAG.finditer(mjml):
        if tag_key(match.group(0)) in wanted:
            return mjml.count("\n", 0, match.start()) + 1
    return None
