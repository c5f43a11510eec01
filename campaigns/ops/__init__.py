"""Operating Rapport: health and liveness checks, the capture Outbox search."""
