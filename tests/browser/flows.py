"""What the browser tests share besides fixtures: the live server handle, screenshots, logging in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import FrameLocator, Page, expect

from campaigns.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DEMO_EMAIL, DEMO_PASSWORD = "demo@rapport.test", "rapport-demo"


@dataclass
class LiveServer:
    """The real app served over HTTP on a free loopback port."""

    url: str
    settings: Settings

    def path(self, p: str) -> str:
        return self.url + p


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under artifacts/screenshots/ (ignored by git) for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: Page, server: LiveServer, email: str = DEMO_EMAIL, password: str = DEMO_PASSWORD) -> None:
    """Log in through the login form, as a person would."""
    page.goto(server.path("/admin/login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def frame(page: Page, title: str) -> FrameLocator:
    """The document inside the iframe with this title; expect() on it retries while the iframe reloads."""
    return page.frame_locator(f'iframe[title="{title}"]')


def frame_eval(page: Page, title: str, script: str) -> Any:
    """Evaluate script in the iframe's document, again if a live preview reloads the iframe meanwhile."""
    for _ in range(20):
        try:
            return frame(page, title).locator("html").evaluate(script)
        except PlaywrightError as exc:
            if "destroyed" not in str(exc) and "detached" not in str(exc):
                raise
    raise AssertionError(f"the {title!r} iframe never stopped reloading")


def viewport_width(page: Page, title: str) -> int:
    """The width, in CSS pixels, an email gets inside the iframe (the iframe's box less its border)."""
    return page.get_by_title(title).evaluate("f => f.clientWidth")
