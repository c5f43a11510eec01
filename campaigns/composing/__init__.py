"""The campaign editor: create and edit, starters, compile, previews, the sample-contact check."""
