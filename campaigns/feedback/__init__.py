"""What recipients and relays tell us: tracking hits, engagement, unsubscribes and preferences, bounces and
complaints, relay events."""
