"""bench/admin_scale.py times every admin GET page: each rule under /admin is timed or on the commented skip list,
and on a small copy of its data set every page it plans answers 200 with real rows."""

from __future__ import annotations

from flask import Flask

from bench import admin_pages, admin_scale


def test_every_admin_get_rule_is_timed_or_skipped_with_a_reason(runtime) -> None:
    admin_scale.build(runtime.engine, 60)
    segment_ids = admin_scale.admin_data(runtime, 60)
    app, client, work = admin_scale.logged_in(runtime)
    _seconds, export_id = admin_scale.time_export(client, work)
    pages, unfilled = admin_scale.page_plan(runtime, app, client, work, segment_ids, export_id)

    assert unfilled == []
    timed = {app.url_map.bind("bench.local").match(path.split("?")[0], method=method, return_rule=True)[0].rule
             for _name, method, path, _body in pages}
    rules = admin_pages.admin_get_rules(app)
    assert rules and all(r.rule in timed or r.endpoint in admin_pages.SKIP for r in rules)
    assert not {r.endpoint for r in rules if r.rule in timed} & set(admin_pages.SKIP)
    assert set(admin_pages.SKIP) <= {r.endpoint for r in rules}, "a skip entry names a rule that no longer exists"
    failed = []
    for name, method, path, body in pages:
        r = client.post(path, json=body) if method == "POST" else client.get(path, headers=(body or {}).get("headers"))
        if r.status_code != 200:
            failed.append((name, path, r.status_code))
    assert failed == []
    assert len(pages) > 80


def _app_with(rule: str, endpoint: str) -> Flask:
    app = Flask(__name__)
    app.add_url_rule("/admin/", "admin.dashboard", lambda: "")
    app.add_url_rule(rule, endpoint, lambda **kw: "")
    return app


def test_a_new_page_is_timed_by_itself_or_named_when_its_rule_cannot_be_filled() -> None:
    pages, unfilled = admin_pages.plan(_app_with("/admin/greenhouses", "admin.greenhouses"), {})
    assert [p[2] for p in pages] == ["/admin/", "/admin/greenhouses"] and unfilled == []

    pages, unfilled = admin_pages.plan(_app_with("/admin/greenhouses/<int:greenhouse_id>", "admin.greenhouse"), {})
    assert [p[2] for p in pages] == ["/admin/"]
    assert unfilled == ["admin.greenhouse /admin/greenhouses/<int:greenhouse_id>: no id for greenhouse_id"]

    pages, unfilled = admin_pages.plan(_app_with("/admin/greenhouses/<int:greenhouse_id>", "admin.greenhouse"),
                                       {"greenhouse_id": 7})
    assert [p[2] for p in pages] == ["/admin/", "/admin/greenhouses/7"] and unfilled == []


def test_a_hand_written_page_stands_for_its_rule_and_skipped_rules_are_not_timed() -> None:
    app = _app_with("/admin/contacts/<int:contact_id>", "admin.contact")
    app.add_url_rule("/admin/login", "admin.login", lambda: "")
    pages, unfilled = admin_pages.plan(app, {}, [("contact page", "GET", "/admin/contacts/5?tab=notes", None)])
    assert [(p[0], p[2]) for p in pages] == [("contact page", "/admin/contacts/5?tab=notes"),
                                             ("dashboard", "/admin/")]
    assert unfilled == []

