"""Outgoing webhooks: endpoints and their secrets, routing outbox events to deliveries, signed posts with retries
and auto-disable, the delivery log with replay (docs/outgoing-webhooks.md)."""
