"""Marketer admin: login, dashboard, contacts, topics, campaigns (compose, preview, test, send), outbox, settings.

The blueprint itself is campaigns.web.admin.blueprint; this package imports every view module so that importing it
registers all admin pages on that blueprint.
"""

from campaigns.web.admin import (  # noqa: F401  (register the views on the blueprint)
    abtests,
    api_keys,
    archive,
    audit,
    auth,
    automations,
    campaigns,
    contacts,
    contacts_io,
    coupons,
    draws,
    events,
    loyalty,
    notes,
    outbox,
    policy,
    post,
    replies,
    reports,
    segments,
    settings,
    signups,
    surveys,
    system,
    topics,
    transactional,
    webhooks,
)
