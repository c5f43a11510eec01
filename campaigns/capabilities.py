"""Every capability that plugs into the send path by registering itself, loaded in one place.

Features add to messages through campaigns.composing.contributions (coupons, surveys, the digest) and record what
the send path reports through campaigns.sending.rejections (bounces, by feedback); each registers when its module is
imported. Whatever renders or sends messages — the worker's tasks, the web app, the tests — imports this module
first, so no message is ever rendered without a feature it uses.
"""

from campaigns.archive import feed_items  # noqa: F401 - registers the feed items contributor (RSS-to-email)
from campaigns.automations import order_mail  # noqa: F401 - registers the order contributor (post-purchase)
from campaigns.coupons import contribution as coupons  # noqa: F401 - registers the coupon contributor
from campaigns.draws import contribution as draws  # noqa: F401 - registers the prize draw contributor (draw_url)
from campaigns.events import contribution as events  # noqa: F401 - registers the event invitation contributor
from campaigns.feedback import ingest as bounces  # noqa: F401 - registers the recorder of SMTP rejections
from campaigns.sending import digest  # noqa: F401 - registers the digest contributor
from campaigns.sending import localtime as local_time  # noqa: F401 - registers the local-time form choices
from campaigns.surveys import contribution as surveys  # noqa: F401 - registers the survey contributor
