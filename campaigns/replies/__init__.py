"""Replies: answers to Rapport's mail reach a real person. A per-recipient reply address, matching inbound replies
to contact and campaign, auto-replies told apart, the Replies inbox, forwarding to the contact's owner and answering
from the admin."""
