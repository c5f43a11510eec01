"""axe-core in the page: the accessibility check the browser tests run over public and admin pages.

axe-core is vendored under tests/browser/vendor/ (from the npm registry, see its README); it is evaluated in the page
through the DevTools protocol, which the pages' Content-Security-Policy does not govern, so the page under test
keeps its own CSP and nothing is loaded from a CDN.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Frame, Page

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
FAILING = ("serious", "critical")


def violations(target: Page | Frame, *, exclude: list[str] | None = None) -> list[dict]:
    """axe's WCAG 2.x A/AA violations of the current document."""
    if not target.evaluate("() => typeof window.axe === 'object'"):
        target.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    context = {"exclude": [[selector] for selector in exclude]} if exclude else "document"
    return target.evaluate(
        """([context]) => axe.run(context === 'document' ? document : context, {runOnly: {type: 'tag',
              values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}, resultTypes: ['violations']})
            .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: ' + n.failureSummary)})))""",
        [context])


def assert_accessible(target: Page | Frame, name: str, *, exclude: list[str] | None = None) -> None:
    """Fail on any serious or critical axe violation, listing each with the elements concerned."""
    bad = [v for v in violations(target, exclude=exclude) if v["impact"] in FAILING]
    assert not bad, f"{name}: axe found serious/critical violations:\n" + "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"]) for v in bad)
