"""The public archive of sent campaigns per topic (pages and Atom feeds without personal data) and RSS-to-email."""
