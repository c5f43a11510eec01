"""Recipient side: open pixel, click redirect, one-click unsubscribe, preference center, relay webhooks.

The blueprint itself is campaigns.web.public.blueprint; this package imports every view module so that importing it
registers all recipient pages on that blueprint. Tracking endpoints only push a compact hit onto Redis
(campaigns.feedback.hits); a worker writes the events.
"""

from campaigns.web.public import (  # noqa: F401  (register the views on bp)
    archive,
    details,
    digest,
    draws,
    events,
    pages,
    signup,
    surveys,
    tracking,
    webhooks,
)
