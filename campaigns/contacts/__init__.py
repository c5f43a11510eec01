"""Contacts, segments, imports and exports."""
