"""Transactional messages (receipts, notices) sent one at a time through the API: accepted and checked here,
queued on their own higher-priority queue, rendered from a transactional campaign and delivered by a worker."""
