"""Starts an RQ worker; see campaigns.worker for the work it does."""
