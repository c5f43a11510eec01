"""Database models, one module per area. Import them from here: `from campaigns.models import Contact`."""

# ruff: noqa: F403
from campaigns.models.abtests import *
from campaigns.models.accounts import *
from campaigns.models.api import *
from campaigns.models.archive import *
from campaigns.models.audit import *
from campaigns.models.automations import *
from campaigns.models.columns import *
from campaigns.models.contacts import *
from campaigns.models.core import *
from campaigns.models.coupons import *
from campaigns.models.draws import *
from campaigns.models.events import *
from campaigns.models.loyalty import *
from campaigns.models.notes import *
from campaigns.models.policy import *
from campaigns.models.post import *
from campaigns.models.replies import *
from campaigns.models.segments import *
from campaigns.models.settings import *
from campaigns.models.signup import *
from campaigns.models.surveys import *
from campaigns.models.transactional import *
from campaigns.models.webhooks import *
