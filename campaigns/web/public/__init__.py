"""Recipient side: open pixel, click redirect, one-click unsubscribe, preference center, relay webhooks.

The blueprint itself is campaigns.web.public.blueprint; this package imports every view module so that importing it
registers all recipient pages on that blueprint. Tracking endpoints only push a compact hit onto Redis
(campaigns.feedback.hits); a worker writes the events.
"""

# bp stays importable from the package, bound before the views load, for view modules that import it from here.
from campaigns.web.public.blueprint import bp as bp

# isort: split
from campaigns.web.public import digest, pages, signup, surveys, tracking, webhooks  # noqa: F401  (register the views on bp)
