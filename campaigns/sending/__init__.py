"""Sending: campaign lifecycle, dispatch, delivery, the contact policy, digests, claims and the retry sweeper."""
