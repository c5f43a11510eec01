"""Admin users, settings kept in the database, sender identities, DKIM keys and mail setup checks, the audit log."""
