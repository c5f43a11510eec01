"""Jinja templates of the admin and the recipient pages; shipped in the wheel as campaigns.templates."""
