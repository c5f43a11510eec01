"""Campaign reports and cached summary figures for the admin."""
