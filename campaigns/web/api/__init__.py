"""The public REST API (/api/v1, docs/api.md): key-authenticated JSON, problem+json errors, OpenAPI 3.1.

Requests authenticate with API keys, not cookies, so the blueprint is exempt from CSRF protection. Its error
handlers answer problem+json for this blueprint only; the admin and public pages keep their HTML errors.
"""

# Importing the view modules registers their operations on bp.
from campaigns.web.api import (  # noqa: F401
    audience,
    campaigns,
    commerce,
    contacts,
    docs,
    feeds,
    transactional,
    webhooks,
)
from campaigns.web.api.blueprint import bp

__all__ = ["bp"]
