"""Services: the application's operations, taking explicit sessions, ids and settings."""
