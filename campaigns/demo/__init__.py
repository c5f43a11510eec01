"""Demo data and the embedded demo runner (`make demo`)."""
