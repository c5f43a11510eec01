"""One error root and one set of error pages: domain errors that reach the app become 404/400 answers."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from campaigns.errors import NotFound, RapportError, ValidationError

# Packages and foundation modules whose errors must all derive from RapportError.
CHECKED = ("campaigns.accounts", "campaigns.ops", "campaigns.web", "campaigns.config", "campaigns.errors",
           "campaigns.addresses", "campaigns.dkim_signing", "campaigns.stops", "campaigns.runtime",
           "campaigns.metrics", "campaigns.storage", "campaigns.db", "campaigns.logs", "campaigns.resources")


def _modules() -> list[str]:
    names = []
    for name in CHECKED:
        module = importlib.import_module(name)
        names.append(name)
        if hasattr(module, "__path__"):
            names += [m.name for m in pkgutil.walk_packages(module.__path__, name + ".")]
    return names


def test_every_error_class_derives_from_the_root() -> None:
    strays = []
    for name in _modules():
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == name
                    and not attr.startswith("_") and not issubclass(obj, RapportError)):
                strays.append(f"{name}.{attr}")
    assert strays == []


@pytest.fixture()
def failing_app(app):
    """The app with two routes that raise domain errors the way a service does."""

    @app.get("/_test/missing")
    def missing():
        raise NotFound("campaign 7 not found")

    @app.get("/_test/invalid")
    def invalid():
        raise ValidationError("the subject is empty", field="subject")

    return app


def test_not_found_is_the_404_page_or_json(failing_app) -> None:
    client = failing_app.test_client()
    page = client.get("/_test/missing")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "This link is not valid" in page.get_data(as_text=True)
    answer = client.get("/_test/missing", headers={"Accept": "application/json"})
    assert answer.status_code == 404 and answer.get_json() == {"error": "campaign 7 not found"}


def test_validation_error_is_a_400_page_or_json(failing_app) -> None:
    client = failing_app.test_client()
    page = client.get("/_test/invalid")
    assert page.status_code == 400 and "the subject is empty" in page.get_data(as_text=True)
    answer = client.get("/_test/invalid", headers={"Accept": "application/json"})
    assert answer.status_code == 400
    assert answer.get_json() == {"error": "the subject is empty", "field": "subject"}


@pytest.mark.parametrize("path", ["/admin/campaigns/999999", "/admin/contacts/999999", "/admin/segments/999999",
                                  "/admin/coupons/999999", "/admin/surveys/999999", "/admin/signups/999999",
                                  "/admin/automations/999999", "/admin/campaigns/999999/report"])
def test_a_missing_id_is_the_404_page(editor, path: str) -> None:
    r = editor.get(path)
    assert r.status_code == 404, path
    assert "Page not found" in r.get_data(as_text=True)
