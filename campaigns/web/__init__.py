"""The web layer: the app factory, the request context (db, rt, csrf), error pages, and the admin and public
blueprints."""
